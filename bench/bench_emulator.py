#!/usr/bin/env python3
"""Benchmark the local API emulator: Messages throughput, and server memory while streaming batch results.

Usage:
    python bench/bench_emulator.py            # full run (about a minute)
    python bench/bench_emulator.py --quick    # a few seconds
    python bench/bench_emulator.py --seconds 1 --results 2000

The emulator runs as a separate process (`python -m batchpilot emulate`), so client and server do not share
a GIL. Throughput: client processes, each with keep-alive `http.client` connections on threads, POST small
non-streaming /v1/messages requests for a fixed time; we count 200s. The same load runs first against a
baseline: a bare standard-library `ThreadingHTTPServer` (the emulator's own HTTP stack, keep-alive, Nagle
off) that reads each body and sends one fixed Messages response, so `messages_vs_bare_server` is the share
of that stack's capacity left after the emulator's work (validation, rate limits, cache, answer, log). Memory: the server's resident set
(VmRSS from /proc, Linux only) sampled while a 10,000-line and a 100,000-line results file stream out.
Flat means the 100k figure is close to the 10k one, not ten times bigger. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BARE_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = json.dumps({"id": "msg_01bare", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                   "content": [{"type": "text", "text": "This is a fixed answer."}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 6}}).encode()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *args):
        pass
    def do_POST(self):
        json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(json.dumps({"base_url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
server.serve_forever()
"""
HEADERS = {"content-type": "application/json", "x-api-key": "bench", "anthropic-version": "2023-06-01"}


def start_server(*extra: str, argv: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "skills" / "batch-processing"))
    proc = subprocess.Popen(argv or [sys.executable, "-m", "batchpilot", "emulate", "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = proc.stdout.readline()
    return proc, json.loads(line)["base_url"]


def _client_process(url: str, threads: int, seconds: float, queue: multiprocessing.Queue) -> None:
    parsed = urlparse(url)
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "Classify this short item: benchmark."}]})
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.perf_counter() + seconds

    def run(slot: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        while time.perf_counter() < deadline:
            conn.request("POST", "/v1/messages", body, HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                counts[slot] += 1
            else:
                errors[slot] += 1
        conn.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((sum(counts), sum(errors)))


def throughput(url: str, seconds: float, processes: int, threads: int) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client_process, args=(url, threads, seconds, queue)) for _ in range(processes)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    ok = sum(r[0] for r in results)
    return {"requests": ok, "errors": sum(r[1] for r in results), "seconds": round(elapsed, 2),
            "requests_per_second": round(ok / seconds, 1), "client_processes": processes,
            "connections": processes * threads}


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _call(url: str, method: str, path: str, body: bytes | None = None) -> dict:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
    conn.request(method, path, body, HEADERS)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return data


def results_memory(url: str, pid: int, size: int) -> dict:
    requests = [{"custom_id": f"item-{i:06d}", "params": {"model": "claude-haiku-4-5", "max_tokens": 64,
                 "messages": [{"role": "user", "content": f"Summarise record {i} in one line."}]}} for i in range(size)]
    body = json.dumps({"requests": requests}).encode()
    del requests
    batch = _call(url, "POST", "/v1/messages/batches", body)
    del body
    _call(url, "POST", f"/_emulator/batches/{batch['id']}/finish")
    before = rss_kb(pid)
    peak, lines = before, 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", f"/v1/messages/batches/{batch['id']}/results", headers=HEADERS)
    response = conn.getresponse()
    while True:
        chunk = response.readline()
        if not chunk:
            break
        lines += 1
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    conn.close()
    return {"lines": lines, "rss_before_kb": before, "rss_peak_while_streaming_kb": peak,
            "stream_seconds": round(elapsed, 2), "lines_per_second": round(lines / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: 3 s of load, 1k/10k-line results")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of load per server (overrides --quick)")
    parser.add_argument("--results", type=int, default=None, help="lines of the larger results file; the smaller has a tenth")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    small, large = (1_000, 10_000) if args.quick else (10_000, 100_000)
    if args.results:
        small, large = max(1, args.results // 10), args.results
    report: dict = {"quick": args.quick, "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    bare, bare_url = start_server(argv=[sys.executable, "-c", BARE_SERVER])
    try:
        report["bare_server"] = throughput(bare_url, seconds, processes=2, threads=4)
    finally:
        bare.terminate()
        bare.wait(timeout=10)
    proc, url = start_server("--batch-speed", "1000000000")
    try:
        _call(url, "POST", "/v1/messages", json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8,
                                                       "messages": [{"role": "user", "content": "warm"}]}).encode())
        report["messages"] = throughput(url, seconds, processes=2, threads=4)
        report["messages_vs_bare_server"] = round(report["messages"]["requests_per_second"]
                                                  / report["bare_server"]["requests_per_second"], 3)
        report["results_small"] = results_memory(url, proc.pid, small)
        report["results_large"] = results_memory(url, proc.pid, large)
        grow = report["results_large"]["rss_peak_while_streaming_kb"] - report["results_large"]["rss_before_kb"]
        report["results_rss_growth_large_kb"] = grow
        report["server_peak_rss_kb"] = rss_kb(proc.pid, "VmHWM")
        report["internal_errors"] = _call(url, "GET", "/_emulator/stats")["internal_errors"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
