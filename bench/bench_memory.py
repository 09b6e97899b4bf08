#!/usr/bin/env python3
"""Benchmark the memory bound of reading items: peak RSS and wall time of `plan` / `prepare` on hostile items.

Usage:
    .venv/bin/python bench/bench_memory.py                 # a 1 GB single-line JSONL
    .venv/bin/python bench/bench_memory.py --quick         # a 100 MB line
    .venv/bin/python bench/bench_memory.py --line-mb 8     # any size

Each case is one fresh subprocess of the installed `batchpilot` (the one next to this Python), run as a user
runs it; its peak RSS is the child's own `ru_maxrss` (os.wait4), its time the wall time:

    baseline        plan over 10 small files: the memory of a small job, measured in this run
    dev_zero        plan --items /dev/zero (an endless device: skipped unread)
    fifo            plan --items a FIFO with no writer (skipped unread, never blocks)
    long_line       plan --items a .jsonl whose one line is LINE_MB megabytes (a sparse file: quick to make),
                    followed by one ordinary line
    long_line_prep  prepare --items the same file

The stated bound (README "Limits"): whatever the size of one item or line, peak RSS stays within
TARGET_RATIO of the baseline's, because items are read in fixed-size chunks and a line longer than
6 x --max-item-bytes + 64 KB is skipped without being held. Prints one JSON object.
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

BP = str(Path(sys.executable).with_name("batchpilot"))
TARGET_RATIO = 1.5


def measure(argv: list[str], cwd: Path) -> dict:
    """Wall seconds, peak RSS (MB) and exit code of one run of `batchpilot argv`."""
    started = time.perf_counter()
    proc = subprocess.Popen([BP, *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "exit_code": proc.returncode, "error": next((l for l in stderr.splitlines() if l.startswith("Error:")), None)}


def long_line_file(path: Path, megabytes: int) -> None:
    """`{"text": "<zeros>"}` on one line of `megabytes` MB (sparse), then one ordinary line."""
    with open(path, "wb") as fh:
        fh.write(b'{"text": "')
        fh.truncate(megabytes * 1024 * 1024)
        fh.seek(0, os.SEEK_END)
        fh.write(b'"}\n{"text": "def f():\\n    return 1\\n"}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--line-mb", type=int, default=1024, help="size of the long line (MB)")
    parser.add_argument("--quick", action="store_true", help="a 100 MB line")
    args = parser.parse_args()
    megabytes = 100 if args.quick else args.line_mb
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "src").mkdir()
        for i in range(10):
            (home / "src" / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
        os.mkfifo(home / "pipe.jsonl")
        long_line_file(home / "long.jsonl", megabytes)
        cases = {
            "baseline": ["plan", "-t", "code-review", "-i", "src"],
            "dev_zero": ["plan", "-t", "code-review", "-i", "/dev/zero"],
            "fifo": ["plan", "-t", "code-review", "-i", "pipe.jsonl"],
            "long_line": ["plan", "-t", "code-review", "-i", "long.jsonl"],
            "long_line_prep": ["prepare", "-t", "code-review", "-i", "long.jsonl", "--run", "run"],
        }
        results = {name: measure(argv, home) for name, argv in cases.items()}
    base = results["baseline"]["peak_rss_mb"]
    for name, r in results.items():
        r["rss_ratio"] = round(r["peak_rss_mb"] / base, 3) if base else None
    print(json.dumps({"line_mb": megabytes, "target_ratio": TARGET_RATIO, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
