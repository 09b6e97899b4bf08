#!/usr/bin/env python3
"""Benchmark the direct executor against a naive baseline on the same rate-limited workloads.

Usage:
    python bench/bench_direct.py            # 1,200 items at 600 RPM, then 600 at 240,000 ITPM (about 2.7 minutes per executor)
    python bench/bench_direct.py --quick    # 300 items at 1,200 RPM, then 300 at 360,000 ITPM (about 30 s per executor)
    python bench/bench_direct.py --items 600 --rpm 600 --token-items 300 --itpm 240000

Two workloads, each with 0.3 s model latency and a concurrency ceiling of 32 for both executors:

* requests: tiny requests, so the request bucket (`--rpm`) binds;
* input tokens: items of about 260 input tokens (`--token-items`) against `--itpm`, requests unlimited, so
  the input-token bucket binds.

Each executor gets its own emulator process (`python -m batchpilot emulate --rpm N --latency L --log F`, or
`--itpm N`), whose binding bucket is emptied first: a token bucket starts full (one minute's burst), which
would hide how a client behaves at the limit, and a job that runs right after another one starts empty anyway.
The request bucket is emptied from many connections until the first 429; the input-token bucket by one
request as large as the whole bucket.

* direct: `batchpilot.executors.direct.executor.run_direct` (client-side buckets, headers, retry-after, SDK retries off);
* naive: `asyncio.gather` over an `asyncio.Semaphore(32)` with the SDK's default retries (2, honouring
  retry-after); an item whose retries run out is a failure.

A third comparison runs the direct executor alone on `--limiter-items` items at `--limiter-rpm` (600 at
300 RPM by default) twice: from a full request bucket (nothing drained: a minute's burst, then the refill)
and from a drained one, so the 429 share and utilisation from a full start stand next to the drained-start
figures (`limiter.full`, `limiter.drained`; utilisation counts the full bucket as available at the start),
and a third time from a full bucket whose limit halves (`POST /_emulator/limits`) once two thirds of the
items are answered (`limiter.changed`: a limit that changes mid-run).

Measured from each emulator's request log: completion time, requests sent per item, 429s, and utilisation
= units answered 200 / (the bucket's remaining at the start + limit/60 × the run's duration), the units being
requests or input tokens. The direct executor is given no limits: it learns them from the response headers
(its receipt's `limits` are reported). Prints one JSON object: the request workload at the top level
(`workload`, `direct`, `naive`), the input-token one under `input_tokens`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "skills" / "batch-processing"
sys.path.insert(0, str(PACKAGE_DIR))
ENV = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR))
CONCURRENCY = 32
LATENCY = 0.3
HEADERS = {"content-type": "application/json", "x-api-key": "bench", "anthropic-version": "2023-06-01"}
DRAIN_BODY = {"model": "claude-haiku-4-5", "max_tokens": 4, "messages": [{"role": "user", "content": "drain"}]}
TOKEN_PAD = 700  # characters of filler per item in the input-token workload: about 260 input tokens a request


def start_emulator(limit_flag: str, limit: int, log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "batchpilot", "emulate", "--port", "0", limit_flag, str(limit),
                             "--latency", str(LATENCY), "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV, text=True)
    return proc, json.loads(proc.stdout.readline())["base_url"]


def drain(url: str, threads: int = 100) -> int:
    """Empty the request bucket: POST from many connections (the emulated latency makes a serial drain slow)
    until the first 429, then stop them all. Returns the requests remaining on that 429 (0)."""
    parsed = urlparse(url)
    payload = json.dumps(DRAIN_BODY)
    remaining: list[int] = []
    empty = threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        try:
            while not empty.is_set():
                conn.request("POST", "/v1/messages", payload, HEADERS)
                response = conn.getresponse()
                response.read()
                if response.status == 429:
                    remaining.append(int(response.getheader("anthropic-ratelimit-requests-remaining") or 0))
                    empty.set()
        finally:
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return min(remaining)


def drain_input_tokens(url: str, itpm: int) -> int:
    """Empty the input-token bucket with one request of more tokens than it holds (it waits for a full bucket
    and takes all of it). Returns the input tokens remaining on its answer (about 0)."""
    parsed = urlparse(url)
    body = dict(DRAIN_BODY, messages=[{"role": "user", "content": "x" * (itpm * 4 + 100)}])
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request("POST", "/v1/messages", json.dumps(body), HEADERS)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"Error: the input-token drain got HTTP {response.status}")
        return int(response.getheader("anthropic-ratelimit-input-tokens-remaining") or 0)
    finally:
        conn.close()


def prepare(workdir: Path, items: int, pad: int = 0) -> Path:
    tdir = workdir / "tiny"
    tdir.mkdir()
    (tdir / "template.json").write_text(json.dumps({"name": "tiny", "description": "Label one short item.",
                                                    "model": "claude-haiku-4-5", "max_tokens": 16, "output_style": "prompt"}))
    (tdir / "system.md").write_text("Label the item.\n")
    (tdir / "user.md").write_text("Item {{item.id}}: {{item.content}}\n")
    (tdir / "schema.json").write_text(json.dumps({"type": "object", "properties": {"label": {"type": "string"}}}))
    source = workdir / "items.jsonl"
    source.write_text("".join(json.dumps({"id": f"item-{i:05d}", "content": f"record {i} " + "x" * pad}) + "\n"
                              for i in range(items)))
    run = workdir / "run"
    subprocess.run([sys.executable, "-m", "batchpilot", "prepare", "--template", str(tdir), "--items", str(source),
                    "--mode", "direct", "--run", str(run)], check=True, env=ENV, cwd=workdir, capture_output=True)
    return run


def run_ours(run: Path, url: str) -> dict:
    import anthropic

    from batchpilot.executors.direct.executor import run_direct

    client = anthropic.AsyncAnthropic(base_url=url, api_key="bench", max_retries=0)
    receipt = run_direct(run, client, concurrency=CONCURRENCY)
    return {"succeeded": receipt["counts"]["succeeded"], "failed": sum(receipt["counts"]["errored"].values()),
            "limits": receipt["limits"]}


def run_naive(run: Path, url: str) -> dict:
    import anthropic

    bodies = [json.loads(line)["params"] for line in (run / "requests.jsonl").read_text().splitlines()]

    async def main() -> dict:
        client = anthropic.AsyncAnthropic(base_url=url, api_key="bench")  # SDK default: max_retries=2
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(params: dict) -> bool:
            async with gate:
                try:
                    await client.messages.create(**params)
                    return True
                except anthropic.APIError:
                    return False

        outcomes = await asyncio.gather(*(one(p) for p in bodies))
        await client.close()
        return {"succeeded": sum(outcomes), "failed": len(outcomes) - sum(outcomes)}

    return asyncio.run(main())


def log_time(entry: dict) -> float:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()


def request_units(entry: dict) -> int:
    return 1


def input_token_units(entry: dict) -> int:
    return entry["usage"]["input_tokens"] + entry["usage"]["cache_creation_input_tokens"]


def measure(entries: list[dict], since: float, initial: int, per_minute: int, items: int,
            units: Callable[[dict], int], changes: list[dict] | None = None) -> dict:
    """Figures from the emulator's log lines of one run; the window opens when the drain left the bucket empty
    (`since`, with `initial` units remaining). `units(entry)` is what one answer used of the binding limit;
    `changes` ({"at", "rpm"}) are limits changed mid-run, each counted from its own time on."""
    messages = [e for e in entries if e["path"] == "/v1/messages"]
    statuses = Counter(e["status"] for e in messages)
    end, permitted, start, rate = log_time(messages[-1]), float(initial), since, per_minute
    for change in changes or ():
        # A lowered limit caps the bucket's level: what was unused above it is gone (the emulator does the same).
        permitted += rate / 60 * (min(change["at"], end) - start)
        start, rate = min(change["at"], end), change["rpm"]
    permitted += rate / 60 * (end - start)
    used = sum(units(e) for e in messages if e["status"] == 200)
    return {"requests_sent": len(messages), "requests_per_item": round(len(messages) / items, 3),
            "http_429": statuses.get(429, 0), "share_429": round(statuses.get(429, 0) / len(messages), 4),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "units_used": used, "utilisation": round(used / permitted, 4)}


def change_limit_midway(url: str, log: Path, after: int, rpm: int, changes: list[dict]) -> threading.Thread:
    """Once `after` answers are in the log, lower the emulator's request limit to `rpm` (POST /_emulator/limits),
    as an account whose limit changes mid-run; the change's log time and new limit go into `changes`."""

    def watch() -> None:
        while True:
            try:
                answered = log.read_text().count('"status":200')
            except OSError:
                answered = 0
            if answered >= after:
                break
            time.sleep(0.05)
        parsed = urlparse(url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        conn.request("POST", "/_emulator/limits", json.dumps({"requests_per_minute": rpm}),
                     {"content-type": "application/json"})
        conn.getresponse().read()
        changes.append({"at": time.time(), "rpm": rpm})

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def bench(name: str, items: int, binding: str, limit: int, full: bool = False, lower_to: int | None = None) -> dict:
    """One executor (`direct` or `naive`) over `items` items with `binding` ("requests" or "input_tokens") at
    `limit` per minute; `full`: the bucket is left full at the start (a fresh account) instead of drained;
    `lower_to`: the request limit drops to this once two thirds of the items are answered (a limit changed
    mid-run; utilisation then counts each limit for its own part of the run)."""
    with tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp:
        workdir = Path(tmp)
        run = prepare(workdir, items, pad=TOKEN_PAD if binding == "input_tokens" else 0)
        log = workdir / "emulator.log"
        proc, url = start_emulator("--rpm" if binding == "requests" else "--itpm", limit, log)
        try:
            if full:
                initial, drained, since = limit, [], time.time()  # the whole minute's burst is there to use
            elif binding == "requests":
                initial = drain(url)
                time.sleep(LATENCY * 2)  # the drain's last requests finish and are logged
                drained = [json.loads(line) for line in log.read_text().splitlines()]
                since = min(log_time(e) for e in drained if e["status"] == 429)
            else:
                initial = drain_input_tokens(url, limit)
                drained = [json.loads(line) for line in log.read_text().splitlines()]
                since = log_time(drained[-1])
            skip = len(drained)
            changes: list[dict] = []
            watcher = change_limit_midway(url, log, skip + items * 2 // 3, lower_to, changes) if lower_to else None
            started = time.perf_counter()
            outcome = (run_ours if name == "direct" else run_naive)(run, url)
            seconds = time.perf_counter() - started
            if watcher is not None:
                watcher.join(timeout=5)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        entries = [json.loads(line) for line in log.read_text().splitlines()[skip:]]
        figures = measure(entries, since, initial, limit, items, request_units if binding == "requests" else input_token_units,
                          changes)
        return {"seconds": round(seconds, 2), "all_succeeded": outcome["succeeded"] == items, **outcome, **figures,
                "ideal_seconds": round(max(0, figures["units_used"] - initial) / (limit / 60), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 items at 1,200 RPM instead of 1,200 at 600")
    parser.add_argument("--items", type=int, default=None, help="items per executor (overrides --quick)")
    parser.add_argument("--rpm", type=int, default=None, help="the emulated account's requests per minute (overrides --quick)")
    parser.add_argument("--token-items", type=int, default=None,
                        help="items per executor in the input-token workload (overrides --quick)")
    parser.add_argument("--itpm", type=int, default=None,
                        help="the emulated account's input tokens per minute in that workload (overrides --quick)")
    parser.add_argument("--limiter-items", type=int, default=None,
                        help="items of the full-bucket vs drained-bucket comparison (600; --quick 400)")
    parser.add_argument("--limiter-rpm", type=int, default=300, help="requests per minute of that comparison [300]")
    args = parser.parse_args()
    args.limiter_items = args.limiter_items or (400 if args.quick else 600)
    items, rpm, token_items, itpm = (300, 1200, 300, 360_000) if args.quick else (1200, 600, 600, 240_000)
    items, rpm = args.items or items, args.rpm or rpm
    token_items, itpm = args.token_items or token_items, args.itpm or itpm
    common = {"latency_s": LATENCY, "concurrency": CONCURRENCY, "bucket_at_start": "empty"}
    report: dict = {"quick": args.quick, "workload": {"items": items, "rpm": rpm, **common},
                    "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    for name in ("direct", "naive"):
        report[name] = bench(name, items, "requests", rpm)
    tokens: dict = {"workload": {"items": token_items, "itpm": itpm, "item_padding_chars": TOKEN_PAD, **common}}
    for name in ("direct", "naive"):
        tokens[name] = bench(name, token_items, "input_tokens", itpm)
    report["input_tokens"] = tokens
    # The limiter from both starts, on the same workload: a full bucket (a fresh account: a minute's burst, then
    # the refill; the client must not run ahead of the server) and a drained one (a job right after another).
    limiter: dict = {"workload": {"items": args.limiter_items, "rpm": args.limiter_rpm, "latency_s": LATENCY,
                                  "concurrency": CONCURRENCY}}
    limiter["full"] = bench("direct", args.limiter_items, "requests", args.limiter_rpm, full=True)
    limiter["drained"] = bench("direct", args.limiter_items, "requests", args.limiter_rpm)
    # A limit that changes mid-run: from a full bucket, the request limit halves once two thirds are answered.
    limiter["changed"] = bench("direct", args.limiter_items, "requests", args.limiter_rpm, full=True,
                               lower_to=max(1, args.limiter_rpm // 2))
    limiter["changed"]["lowered_to_rpm"] = max(1, args.limiter_rpm // 2)
    report["limiter"] = limiter
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
