"""Benchmark the batch executor against the emulator: peak memory of submitting, speed of fetching.

    python bench/bench_batch.py [--quick] [--requests N]

Prints one JSON object. Each side runs in its own subprocess and reports its own time (after imports) and
peak RSS; the emulator runs in this process and is shared by both sides.

* submit: `batchpilot submit RUN` (bodies streamed from requests.jsonl) vs. loading the same requests into a
  Python list and passing it to the SDK's `client.messages.batches.create(requests=...)`.
* fetch: `batchpilot fetch RUN` (raw streamed download, lines recorded as bytes) vs. iterating the SDK's
  `client.messages.batches.results(id)` and appending each object's JSON to a file. Both fetch from a
  replay server that serves the batch and its results file as the emulator produced them, so the timing is
  the client's work, not the emulator generating answers; both time themselves after importing the SDK.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "skills" / "batch-processing"))

# Every side runs as `python -c PRELUDE + SIDE REPORT_FILE ARGS...`: it times its own work (after imports)
# and reports its peak RSS from /proc/self/status (VmHWM belongs to the process image, so the parent's
# memory at fork time does not count, unlike ru_maxrss which Linux carries across exec).
PRELUDE = r"""
import sys, time, json as _json
_report = sys.argv.pop(1)
def _done(started):
    peak = None
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    open(_report, "w").write(_json.dumps({"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak, 1)}))
"""

LIST_SIDE = r"""
import json, sys, anthropic
started = time.perf_counter()
path, base = sys.argv[1], sys.argv[2]
requests = [json.loads(line) for line in open(path, encoding="utf-8")]
client = anthropic.Anthropic(base_url=base, api_key="bench", max_retries=0)
for start in range(0, len(requests), 100_000):
    client.messages.batches.create(requests=requests[start:start + 100_000])
_done(started)
"""

# `python -m batchpilot -q submit RUN`, run the way `-m` runs it but inside the measured process (its own time
# and peak RSS are what is reported). The SDK, click and the package's base modules are imported before the
# clock starts, as the SDK side imports the SDK first: the time is the command's work.
STREAM_SUBMIT_SIDE = r"""
import runpy
import anthropic, click
import batchpilot.core.errors, batchpilot.version
run_dir = sys.argv[1]
started = time.perf_counter()
sys.argv = ["batchpilot", "-q", "submit", run_dir]
try:
    runpy.run_module("batchpilot", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code:
        raise
_done(started)
"""

SDK_FETCH_SIDE = r"""
import anthropic
base, out = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base, api_key="bench")
started = time.perf_counter()
with open(out, "w", encoding="utf-8") as fh:
    for batch_id in sys.argv[3:]:
        for result in client.messages.batches.results(batch_id):
            fh.write(result.to_json(indent=None) + "\n")
_done(started)
"""

BATCHPILOT_FETCH_SIDE = STREAM_SUBMIT_SIDE.replace('"submit"', '"fetch"')


class Replay:
    """A loopback server answering retrieve and results for recorded batches: the bytes, nothing else."""

    def __init__(self, batches: dict[str, tuple[dict, Path]]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        store = batches

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                parts = self.path.split("?")[0].strip("/").split("/")
                batch_id = parts[3] if len(parts) > 3 else ""
                if batch_id not in store:
                    self.send_error(404)
                    return
                meta, path = store[batch_id]
                if parts[-1] == "results":
                    self.send_response(200)
                    self.send_header("content-type", "application/x-jsonl")
                    self.send_header("content-length", str(path.stat().st_size))
                    self.end_headers()
                    with open(path, "rb") as fh:
                        while chunk := fh.read(1 << 20):
                            self.wfile.write(chunk)
                    return
                body = json.dumps({**meta, "results_url": f"{base}/v1/messages/batches/{batch_id}/results"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("request-id", "req_replay")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.base_url = base
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get(url: str) -> bytes:
    import urllib.request

    request = urllib.request.Request(url, headers={"x-api-key": "bench", "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(request) as response:
        return response.read()


def measure(side: str, args: list[str], env: dict, cwd: Path) -> dict:
    """Run one side in its own process; the seconds and peak RSS (MB) it reports."""
    report = cwd / f"report-{time.monotonic_ns()}.json"
    done = subprocess.run([sys.executable, "-c", PRELUDE + side, str(report), *args], env=env, cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args} failed: {done.stderr[-2000:]}")
    return json.loads(report.read_text())


def make_run(folder: Path, n: int, size: int) -> Path:
    """A run directory with n requests of about `size` bytes each (written directly: prepare is not measured)."""
    run = folder / "run"
    env = dict(os.environ, ANTHROPIC_API_KEY="")
    items = folder / "one.jsonl"
    items.write_text('{"id": "x", "content": "x"}\n')
    subprocess.run([sys.executable, "-m", "batchpilot", "-q", "prepare", "--template", "code-review", "--items",
                    str(items), "--run", str(run)], check=True, env=env, cwd=folder, stdout=subprocess.DEVNULL)
    filler = "lorem ipsum dolor sit amet " * (size // 27)
    with open(run / "requests.jsonl", "w") as req, open(run / "items.jsonl", "w") as its:
        for i in range(n):
            params = {"model": "claude-haiku-4-5", "max_tokens": 8,
                      "messages": [{"role": "user", "content": f"{i} {filler}"}]}
            req.write(json.dumps({"custom_id": f"b-{i}", "params": params}, separators=(",", ":")) + "\n")
            its.write(json.dumps({"custom_id": f"b-{i}", "source": "bench"}) + "\n")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 requests instead of 100,000")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--size", type=int, default=2000, help="approximate bytes per request")
    opts = parser.parse_args()
    n = opts.requests or (20_000 if opts.quick else 100_000)

    from batchpilot.emulator.http.server import Emulator

    from batchpilot.emulator.config import EmulatorConfig

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        run = make_run(folder, n, opts.size)
        body_mb = (run / "requests.jsonl").stat().st_size / 1e6
        config = EmulatorConfig(batch_speed=1e9, data_dir=str(folder / "emu"), batch_queue_limit=10_000_000)
        with Emulator(config) as emu:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHPILOT_"))}
            env.update(ANTHROPIC_BASE_URL=emu.base_url, ANTHROPIC_API_KEY="bench", BATCHPILOT_POLL_MIN="0.05",
                       BATCHPILOT_BATCH_RPM="1000000", PYTHONPATH=str(ROOT / "skills" / "batch-processing"))
            bp = [sys.executable, "-m", "batchpilot", "-q"]
            stream_submit = measure(STREAM_SUBMIT_SIDE, [str(run)], env, folder)
            list_submit = measure(LIST_SIDE, [str(run / "requests.jsonl"), emu.base_url], env, folder)
            subprocess.run(bp + ["status", str(run), "--wait"], check=True, env=env, cwd=folder, stdout=subprocess.DEVNULL)
            journal = [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]
            ids = [e["batch_id"] for e in journal if e["event"] == "batch_created"]
            recorded_batches = {}
            for batch_id in ids:  # record what the emulator serves, once, for the replay server
                meta = _get(f"{emu.base_url}/v1/messages/batches/{batch_id}")
                path = folder / f"{batch_id}.results"
                path.write_bytes(_get(f"{emu.base_url}/v1/messages/batches/{batch_id}/results"))
                recorded_batches[batch_id] = (json.loads(meta), path)
        replay = Replay(recorded_batches)
        try:
            env["ANTHROPIC_BASE_URL"] = replay.base_url
            stream_fetch = measure(BATCHPILOT_FETCH_SIDE, [str(run)], env, folder)
            sdk_fetch = measure(SDK_FETCH_SIDE, [replay.base_url, str(folder / "sdk.jsonl"), *ids], env, folder)
        finally:
            replay.close()
        recorded = sum(1 for _ in open(run / "results.jsonl", "rb"))
    print(json.dumps({
        "requests": n, "request_bytes_mb": round(body_mb, 1), "batches": len(ids),
        "submit": {"batchpilot_streamed": stream_submit, "sdk_list_create": list_submit,
                   "rss_ratio": round(stream_submit["peak_rss_mb"] / list_submit["peak_rss_mb"], 3)},
        "fetch": {"batchpilot_fetch": stream_fetch, "sdk_results_iteration": sdk_fetch, "lines_recorded": recorded,
                  "speedup": round(sdk_fetch["seconds"] / stream_fetch["seconds"], 2)},
        "targets": {"rss_ratio_at_most": 0.333, "speedup_at_least": 5.0},
    }, indent=2))


if __name__ == "__main__":
    main()
