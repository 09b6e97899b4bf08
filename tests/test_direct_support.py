"""Helpers for the direct-executor tests (no tests here): a tiny template and run, an emulator request tap,
bucket draining, and the emulator-log arithmetic the acceptance checks use."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

TINY_SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"],
               "additionalProperties": False}
ID_RE = re.compile(r"\bitem-\d{4}\b")


def write_template(root: Path, max_tokens: int = 16, model: str = "claude-haiku-4-5") -> Path:
    """A template small enough that requests carry no cache_control (so every input token counts)."""
    tdir = root / "tiny"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "template.json").write_text(json.dumps({
        "name": "tiny", "description": "Label one short item.", "model": model, "max_tokens": max_tokens,
        "output_style": "prompt"}))
    (tdir / "system.md").write_text("Label the item.\n")
    (tdir / "user.md").write_text("Item {{item.id}}: {{item.content}}\n")
    (tdir / "schema.json").write_text(json.dumps(TINY_SCHEMA))
    return tdir


def make_run(bp, root: Path, n: int, *, pad: int = 0, max_tokens: int = 16, name: str = "run",
             extra: tuple[str, ...] = ()) -> Path:
    """Prepare a run of `n` items whose user text names their custom_id (`item-0007`), so a request can be
    told apart on the server side."""
    tdir = write_template(root, max_tokens)
    items = root / f"{name}-items.jsonl"
    with open(items, "w") as fh:
        for i in range(n):
            cid = f"item-{i:04d}"
            fh.write(json.dumps({"id": cid, "content": f"{cid} " + "x" * pad}) + "\n")
    run = root / name
    result = bp("prepare", "--template", str(tdir), "--items", str(items), "--mode", "direct", "--run", str(run), *extra)
    assert result.code == 0, result.stderr
    return run


class Tap:
    """Records, for every POST /v1/messages the emulator answers, the item id named in the body and the status.

    The emulator's request log has no custom_id or body digest, so we wrap `App.handle` of the in-process
    emulator (a test-side wrapper; the emulator itself is unchanged)."""

    def __init__(self, emu):
        self.calls: list[tuple[str | None, int]] = []
        self.lock = threading.Lock()
        app = emu.app
        original = app.handle

        def handle(request, request_id):
            response = original(request, request_id)
            if request.method == "POST" and request.path.endswith("/v1/messages"):
                match = ID_RE.search(request.body.decode("utf-8", "replace"))
                with self.lock:
                    self.calls.append((match.group(0) if match else None, response.status))
            return response

        app.handle = handle

    def successes(self) -> Counter:
        with self.lock:
            return Counter(cid for cid, status in self.calls if status == 200)

    def sent_ids(self) -> Counter:
        with self.lock:
            return Counter(cid for cid, _ in self.calls)


def drain(base_url: str, body: dict, until_status: int = 429, limit: int = 100_000) -> dict:
    """POST `body` until the emulator answers `until_status`; return that response's headers (lower-cased)."""
    parsed = urlparse(base_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    payload = json.dumps(body)
    headers = {"content-type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"}
    try:
        for _ in range(limit):
            conn.request("POST", "/v1/messages", payload, headers)
            response = conn.getresponse()
            response.read()
            if response.status == until_status:
                return {k.lower(): v for k, v in response.getheaders()}
        raise AssertionError("the bucket never ran out")
    finally:
        conn.close()


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def log_time(entry: dict) -> float:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()


def utilisation(entries: list[dict], initial: float, per_minute: float, measure, since: float) -> dict:
    """What the run got from the binding limit against what it permitted: `initial` units at `since` (when the
    drain left the bucket empty) plus `per_minute` / 60 per second until the run's last answer.
    `measure(entry)` is the units one 200 used."""
    messages = [e for e in entries if e["path"] == "/v1/messages"]
    end = log_time(messages[-1])
    used = sum(measure(e) for e in messages if e["status"] == 200)
    permitted = initial + per_minute / 60 * (end - since)
    statuses = Counter(e["status"] for e in messages)
    return {"used": used, "permitted": permitted, "ratio": used / permitted, "duration": end - since,
            "requests": len(messages), "429": statuses.get(429, 0), "statuses": dict(statuses)}
