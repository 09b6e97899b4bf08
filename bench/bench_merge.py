#!/usr/bin/env python3
"""Benchmark `merge`: throughput in result records per second, and peak memory as the run grows.

Usage:
    python bench/bench_merge.py            # 100,000 and 1,000,000 items (a few minutes, ~1.5 GB of disk)
    python bench/bench_merge.py --quick    # 10,000 and 100,000 items (about half a minute)
    python bench/bench_merge.py --sizes 1000 10000

For each size it builds a run directory: `prepare` over one item with the bundled code-review template (a
findings schema), then items.jsonl is widened to N items. results.jsonl gets one record per item in a
shuffled order, 1 to 3 findings each, plus about 3% extra records (an overloaded error before a success, or a
schema-invalid answer before a valid one) so the duplicate and validation paths run too.

Each merge runs in a fresh Python subprocess that reports its own wall time and `ru_maxrss` before and after
(the peak resident set, so the figure includes every transient). The same subprocess first times a
baseline, reading results.jsonl and parsing every line with `json.loads` (nothing kept): the least any merge
must do, so `merge_over_parse_only` (merge throughput / parse-only throughput) says what validation,
de-duplication, ordering and writing cost on top. Memory is an index of ids plus a few typed
arrays, so it grows with the item count but not with the size of the results: compare `rss_growth_mb` with
`results_mb`. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKILL = ROOT / "skills" / "batch-processing"
TARGET_RECORDS_PER_SECOND = 20_000

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from batchpilot.results.merge import merge_run
# Baseline: the least any merge must do, read every line and parse it as JSON (nothing kept).
started = time.perf_counter()
with open(Path(sys.argv[1]) / "results.jsonl", "rb") as fh:
    for line in fh:
        json.loads(line)
parse_seconds = time.perf_counter() - started
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
summary = merge_run(Path(sys.argv[1]))
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "parse_seconds": parse_seconds, "rss_before_kb": before, "rss_peak_kb": after,
                  "counts": summary["counts"], "records": summary["result_records"]}))
"""

FINDING = {"file": "src/app/module.py", "line_start": 10, "line_end": 12, "severity": "medium", "category": "bug",
           "message": "The loop bound skips the last element, so the final record is never processed.",
           "suggestion": "Iterate over range(len(items)) or over the items themselves.", "confidence": "high"}
SEVERITIES = ["critical", "high", "medium", "low", "info"]


def build_run(base: Path, n: int, seed: int = 1) -> Path:
    """A run directory of `n` items and shuffled results; returns its path."""
    sys.path.insert(0, str(SKILL))
    from batchpilot.prepare.job import open_job
    from batchpilot.rundir.create import create_run

    seed_items = base / "seed.jsonl"
    seed_items.write_text(json.dumps({"id": "item-0000000", "text": "x = 1\n"}) + "\n")
    job = open_job("code-review", str(seed_items))
    run = base / f"run-{n}"
    create_run(run, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    with open(run / "items.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(f'{{"custom_id":"item-{i:07d}","source":"src/module_{i}.py","kind":"file","bytes":1200,"path":"src/module_{i}.py"}}\n')
    manifest = json.loads((run / "run.json").read_text())
    manifest["item_count"] = n
    (run / "run.json").write_text(json.dumps(manifest, indent=2))
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    usage = {"input_tokens": 900, "output_tokens": 350, "cache_read_input_tokens": 2100, "cache_creation_input_tokens": 0}
    with open(run / "results.jsonl", "w", encoding="utf-8") as fh:
        for i in order:
            cid = f"item-{i:07d}"
            findings = [dict(FINDING, line_start=i % 500 + 1, line_end=i % 500 + 3, severity=SEVERITIES[(i + k) % 5])
                        for k in range(1 + i % 3)]
            output = {"summary": f"Module {i}: {len(findings)} problems.", "findings": findings}
            attempt = 1
            if i % 33 == 0:
                fh.write(json.dumps({"custom_id": cid, "attempt": 1, "mode": "batch", "at": "2026-11-28T10:00:00Z",
                                     "result": {"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}}) + "\n")
                attempt = 2
            elif i % 33 == 1:
                bad = dict(output, findings=[dict(FINDING, severity="urgent")])
                fh.write(json.dumps({"custom_id": cid, "attempt": 1, "mode": "batch", "at": "2026-11-28T10:00:00Z", "result": {"type": "succeeded", "message": {
                    "model": "claude-sonnet-5", "content": [{"type": "text", "text": json.dumps(bad)}], "stop_reason": "end_turn", "usage": usage}}}) + "\n")
                attempt = 2
            message = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-5",
                       "content": [{"type": "text", "text": json.dumps(output)}], "stop_reason": "end_turn", "usage": usage}
            fh.write(json.dumps({"custom_id": cid, "attempt": attempt, "mode": "batch", "at": "2026-11-28T10:05:00Z",
                                 "result": {"type": "succeeded", "message": message}}) + "\n")
    return run


def measure(run: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(SKILL))
    out = subprocess.run([sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k items instead of 100k and 1M")
    parser.add_argument("--sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), default=None,
                        help="the two item counts (overrides --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the generated run directories")
    args = parser.parse_args()
    sizes = tuple(args.sizes) if args.sizes else (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    base = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    rows = []
    try:
        for n in sizes:
            t0 = time.perf_counter()
            run = build_run(base, n)
            built = time.perf_counter() - t0
            m = measure(run)
            results_mb = (run / "results.jsonl").stat().st_size / 1e6
            growth_mb = (m["rss_peak_kb"] - m["rss_before_kb"]) / 1024
            rows.append({
                "items": n,
                "result_records": m["records"],
                "results_mb": round(results_mb, 1),
                "build_seconds": round(built, 1),
                "merge_seconds": round(m["seconds"], 2),
                "records_per_second": round(m["records"] / m["seconds"]),
                "parse_only_records_per_second": round(m["records"] / m["parse_seconds"]),
                "merge_over_parse_only": round(m["parse_seconds"] / m["seconds"], 3),
                "items_per_second": round(n / m["seconds"]),
                "rss_before_mb": round(m["rss_before_kb"] / 1024, 1),
                "rss_peak_mb": round(m["rss_peak_kb"] / 1024, 1),
                "rss_growth_mb": round(growth_mb, 1),
                "growth_bytes_per_item": round(growth_mb * 1024 * 1024 / n),
                "growth_vs_results_size": round(growth_mb / results_mb, 3),
                "counts": m["counts"],
            })
            if not args.keep:
                shutil.rmtree(run)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    small, large = rows
    print(json.dumps({
        "benchmark": "merge",
        "schema": "code-review (findings)",
        "cpus": os.cpu_count(),
        "runs": rows,
        "size_ratio": large["items"] / small["items"],
        "rss_growth_ratio": round(large["rss_growth_mb"] / max(small["rss_growth_mb"], 0.1), 2),
        "results_size_ratio": round(large["results_mb"] / small["results_mb"], 2),
        "target_records_per_second": TARGET_RECORDS_PER_SECOND,
        "meets_target": min(r["records_per_second"] for r in rows) >= TARGET_RECORDS_PER_SECOND,
    }, indent=2))


if __name__ == "__main__":
    main()
