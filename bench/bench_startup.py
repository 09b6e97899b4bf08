#!/usr/bin/env python3
"""Benchmark start-up: how long `batchpilot --help`, `plan` and `status` take next to importing the SDK.

Usage:
    .venv/bin/python bench/bench_startup.py                      # 10 runs of each
    .venv/bin/python bench/bench_startup.py --quick              # 3 runs of each
    .venv/bin/python bench/bench_startup.py --command 'templates list' --command 'prepare --template code-review --items ITEMS --run RUN'

Each case runs in a fresh subprocess of the same Python (default: the one running this script, which must
have anthropic, click and jsonschema), through the skill's shim `scripts/batchpilot` as a user runs it:

    import_anthropic   python -c "import anthropic"          the cost the CLI avoids by importing lazily
    help               shim --help
    plan_10            shim plan over 10 small generated files
    status_10          shim status RUN --emulate, RUN a finished 10-item batch run (made once, untimed, with
                       `run --mode batch --emulate`)
    <command>          any --command, with ITEMS (the 10 files' glob) and RUN (a fresh directory) filled in

The median wall time of each is reported, with help and plan_10 as ratios of import_anthropic; the target is
a ratio under TARGET_RATIO, i.e. the commands that never call the API never pay for the SDK. `status` does
call the API: even for a run whose batches have all ended it builds a client (a run never submitted is an
error, "no batches yet"), so it needs ANTHROPIC_API_KEY or `--emulate`, which also starts the in-process
emulator on the run's persisted emulator state. Its ratio is reported with no target: it shows what an API
command's start-up costs on top of the SDK import. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "skills" / "batch-processing" / "scripts" / "batchpilot"
TARGET_RATIO = 0.5
ITEM_COUNT = 10


def median_seconds(argv: list[str], runs: int, cwd: Path) -> float:
    """Median wall time of `runs` runs of argv (each must exit 0)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"Error: {shlex.join(argv)} exited {done.returncode}\n{done.stderr[-2000:]}")
    return statistics.median(times)


def make_items(directory: Path) -> str:
    """ITEM_COUNT small Python files; returns their glob."""
    directory.mkdir(parents=True)
    for n in range(ITEM_COUNT):
        (directory / f"module_{n}.py").write_text(
            f'"""Module {n}."""\n\n\ndef total(values):\n    result = 0\n    for v in values[1:]:\n'
            f"        result += v * {n}\n    return result\n")
    return str(directory / "*.py")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each instead of 10")
    parser.add_argument("--runs", type=int, default=None, help="runs of each case (overrides --quick)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first pass of each case")
    parser.add_argument("--python", default=sys.executable, help="the Python to measure (default: this one)")
    parser.add_argument("--command", action="append", default=[], metavar="ARGS",
                        help="another batchpilot command to time; ITEMS and RUN are filled in; repeatable")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 10)
    python = args.python

    check = subprocess.run([python, "-c", "import anthropic, click, jsonschema"], capture_output=True, text=True)
    if check.returncode != 0:
        print(f"Error: {python} cannot import anthropic, click and jsonschema", file=sys.stderr)
        print("Hint: run `python3 tests/run.py` once, then `.venv/bin/python bench/bench_startup.py`", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        items = make_items(work / "items")
        finished = work / "finished-run"
        subprocess.run([python, str(SHIM), "-q", "run", "--template", "code-review", "--items", items, "--mode", "batch",
                        "--emulate", "--run", str(finished)], cwd=work, check=True, stdout=subprocess.DEVNULL)
        cases = {
            "python_startup": [python, "-c", "pass"],
            "import_anthropic": [python, "-c", "import anthropic"],
            "help": [python, str(SHIM), "--help"],
            "plan_10": [python, str(SHIM), "plan", "--template", "code-review", "--items", items],
            "status_10": [python, str(SHIM), "status", str(finished), "--emulate"],
        }
        # One untimed pass of each warms the OS file cache and writes the .pyc files.
        for argv_ in cases.values() if not args.no_warmup else ():
            median_seconds(argv_, 1, work)
        medians = {name: median_seconds(argv_, runs, work) for name, argv_ in cases.items()}
        for n, command in enumerate(args.command):
            times = []
            for i in range(runs):  # a command that writes a run directory gets a fresh RUN each time
                words = [w.replace("ITEMS", items) for w in shlex.split(command)]
                words = [str(work / "runs" / f"{n}-{i}") if w == "RUN" else w for w in words]
                times.append(median_seconds([python, str(SHIM), *words], 1, work))
            medians[command] = statistics.median(times)

    base = medians["import_anthropic"]
    ratios = {name: round(value / base, 3) for name, value in medians.items() if name not in ("python_startup", "import_anthropic")}
    print(json.dumps({
        "benchmark": "startup",
        "python": python,
        "python_version": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                         capture_output=True, text=True).stdout.strip(),
        "runs": runs,
        "items": ITEM_COUNT,
        "median_seconds": {name: round(value, 4) for name, value in medians.items()},
        "ratio_to_import_anthropic": ratios,
        "target_ratio": TARGET_RATIO,
        "meets_target": all(ratios[name] < TARGET_RATIO for name in ("help", "plan_10")),
        "cpus": os.cpu_count(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
