"""Helpers shared by the reliability suite (no tests here): run the CLI as a real subprocess against an
emulator started by the test, tap the emulator to see which items each request carried, and hash a
directory tree.

The emulator runs in the test process, so `Tap` can wrap its request handler and record, from the server's
side, the custom_ids every batch create carried and the item every Messages request named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

FAST = {"BATCHPILOT_POLL_MIN": "0.02", "BATCHPILOT_POLL_MAX": "0.1", "BATCHPILOT_BATCH_RPM": "1000000"}
ITEM_ID_RE = re.compile(r"\bitem-\d{4}\b")


def clean_env(base_url: str | None, key: str | None = "test-key", **extra: str) -> dict:
    """This process's environment without any ANTHROPIC_/BATCHPILOT_ variable, plus fast polling and the
    given base URL and key (None: unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHPILOT_"))}
    env.update(FAST)
    if base_url is not None:
        env["ANTHROPIC_BASE_URL"] = base_url
    if key is not None:
        env["ANTHROPIC_API_KEY"] = key
    env.update(extra)
    return env


def api_starter(emulator, monkeypatch, tmp_path: Path, seed: int):
    """A `start(**config)` that runs an emulator (logging to tmp_path/emulator.log) and points this test's
    environment at it with a test key and the fast poll settings, as a user's shell would be."""
    def start(**config):
        config.setdefault("log_path", str(tmp_path / "emulator.log"))
        emu = emulator(seed=seed, **config)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        for k, v in FAST.items():
            monkeypatch.setenv(k, v)
        return emu
    return start


def cli(cwd: Path, env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m batchpilot ARGS` in `cwd`, with this interpreter (the test venv's)."""
    return subprocess.run([sys.executable, "-m", "batchpilot", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_items(path: Path, n: int, prefix: str = "item") -> Path:
    """`n` JSONL records `{"id": "item-0000", "content": "item-0000 ..."}`: the id is in the text, so a
    Messages request can be told apart on the server side."""
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            cid = f"{prefix}-{i:04d}"
            fh.write(json.dumps({"id": cid, "content": f"{cid}\ndef f{i}(x):\n    return x + {i}\n"}) + "\n")
    return path


def write_tiny_template(root: Path) -> Path:
    """A template small enough that its requests carry no cache_control: every answer's usage is the same
    whatever the order the requests arrive in (so merged.jsonl can be compared byte for byte)."""
    tdir = root / "tiny"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "template.json").write_text(json.dumps({
        "name": "tiny", "description": "Label one short item.", "model": "claude-haiku-4-5", "max_tokens": 16,
        "output_style": "json_schema"}))
    (tdir / "system.md").write_text("Label the item.\n")
    (tdir / "user.md").write_text("Item {{item.id}}: {{item.content}}\n")
    (tdir / "schema.json").write_text(json.dumps({
        "type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"],
        "additionalProperties": False}))
    return tdir


@dataclass
class Call:
    kind: str  # "message" or "create"
    status: int
    ids: list[str]
    batch_id: str | None = None


class Tap:
    """Wraps an in-process emulator's `App.handle`; records every Messages request and batch create."""

    def __init__(self, emu):
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        original = emu.app.handle

        def handle(request, request_id):
            response = original(request, request_id)
            path = request.path.split("?")[0]
            if request.method == "POST" and path.endswith("/v1/messages"):
                ids = ITEM_ID_RE.findall(request.body.decode("utf-8", "replace"))[:1]
                self._add(Call("message", response.status, ids))
            elif request.method == "POST" and path.endswith("/v1/messages/batches"):
                try:
                    ids = [r["custom_id"] for r in json.loads(request.body)["requests"]]
                except (ValueError, KeyError, TypeError):
                    ids = []
                batch_id = None
                if response.status == 200 and isinstance(response.body, bytes):
                    batch_id = json.loads(response.body).get("id")
                self._add(Call("create", response.status, ids, batch_id))
            return response

        emu.app.handle = handle

    def _add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def snapshot(self) -> list[Call]:
        with self.lock:
            return list(self.calls)


def results(run: Path) -> list[dict]:
    """The complete result records (a torn last line was never acknowledged, so it is not counted)."""
    from batchpilot.core.files import iter_jsonl

    return list(iter_jsonl(run / "results.jsonl"))


def tree_hashes(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `root` (the lock file aside: flock needs it to exist)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and path.name != ".lock":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_error_hint(code: int, stderr: str, stdout: str = "", codes: tuple[int, ...] = (1, 2)) -> None:
    """The user-error contract: exit 1 or 2, an `Error:` and a `Hint:` line on stderr, no traceback."""
    assert code in codes, f"exit {code}\n{stderr[-3000:]}"
    lines = stderr.splitlines()
    assert any(l.startswith("Error: ") for l in lines), stderr[-3000:]
    assert any(l.startswith("Hint: ") and len(l) > 7 for l in lines), stderr[-3000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
