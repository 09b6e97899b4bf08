#!/usr/bin/env python3
"""Benchmark start-up: how long `batchpilot --help`, `plan`, `status` and `demo` take next to importing the SDK.

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
    plan_10_private_venv
                       plan_10 run by a Python without the dependencies: the shim finds its private virtual
                       environment ready and re-runs itself there, as every call after the first does on
                       such a machine
    demo               shim demo, the README's main command (the sample code review, batch mode, on the
                       in-process emulator with injected faults and one retry round), each run in a fresh
                       directory
    <command>          any --command, with ITEMS (the 10 files' glob) and RUN (a fresh directory) filled in

The median wall time of each is reported, with help and plan_10 as ratios of import_anthropic; the target is
a ratio under TARGET_RATIO, i.e. the commands that never call the API never pay for the SDK. `status` of a
run whose batches have all ended answers from the run's journal: no client, no SDK import, no key. Its ratio
is reported with no target, as are demo's and plan_10_private_venv's ratio to plan_10
(`private_venv_over_direct`, the price of the shim's re-run).

The private environment is made without network: a venv without pip whose site-packages has a .pth line
naming the measured Python's site-packages (so it imports the same dependencies), plus the shim's ready
stamp; the Python without the dependencies is another venv without pip. Prints one JSON object.
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


def median_seconds(argv: list[str], runs: int, cwd: Path, env: dict[str, str] | None = None) -> float:
    """Median wall time of `runs` runs of argv (each must exit 0)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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


def private_venv(python: str, work: Path) -> tuple[str, dict[str, str]]:
    """A Python without the dependencies, and the environment under which the shim finds its private venv ready.

    Mirrors the shim's layout ($CLAUDE_PLUGIN_DATA/venv-pyXY with the `.batchpilot-ready` stamp); the private
    venv borrows `python`'s site-packages through a .pth file instead of downloading the dependencies.
    """
    facts = json.loads(subprocess.run(
        [python, "-c", "import json, sys, sysconfig; p = sysconfig.get_paths(); "
                       "print(json.dumps([f'py{sys.version_info[0]}{sys.version_info[1]}', p['purelib'], p['platlib']]))"],
        capture_output=True, text=True, check=True).stdout)
    tag, site_dirs = facts[0], sorted(set(facts[1:]))
    bare = work / "bare"
    subprocess.run([python, "-m", "venv", "--without-pip", str(bare)], check=True)
    bare_python = bare / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    data = work / "plugin-data"
    venv = data / f"venv-{tag}"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    own_site = subprocess.run([str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    (Path(own_site) / "borrowed-dependencies.pth").write_text("".join(f"{d}\n" for d in site_dirs))
    (venv / ".batchpilot-ready").write_text("ok\n")
    env = {k: v for k, v in os.environ.items() if k not in ("BATCHPILOT_SHIM_VENV", "VIRTUAL_ENV", "PYTHONPATH")}
    env["CLAUDE_PLUGIN_DATA"] = str(data)
    return str(bare_python), env


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
        bare_python, private_env = private_venv(python, work)
        plan = ["plan", "--template", "code-review", "--items", items]
        cases = {
            "python_startup": ([python, "-c", "pass"], None),
            "import_anthropic": ([python, "-c", "import anthropic"], None),
            "help": ([python, str(SHIM), "--help"], None),
            "plan_10": ([python, str(SHIM), *plan], None),
            "status_10": ([python, str(SHIM), "status", str(finished), "--emulate"], None),
            "plan_10_private_venv": ([bare_python, str(SHIM), *plan], private_env),
        }
        # One untimed pass of each warms the OS file cache and writes the .pyc files.
        for argv_, env in cases.values() if not args.no_warmup else ():
            median_seconds(argv_, 1, work, env)
        medians = {name: median_seconds(argv_, runs, work, env) for name, (argv_, env) in cases.items()}
        # demo writes its run under the current directory's .batchpilot/runs/: a fresh directory per run.
        demo_times = []
        for i in range(runs):
            here = work / "demo" / str(i)
            here.mkdir(parents=True)
            demo_times.append(median_seconds([python, str(SHIM), "demo"], 1, here))
        medians["demo"] = statistics.median(demo_times)
        for n, command in enumerate(args.command):
            times = []
            for i in range(runs):  # a command that writes a run directory gets a fresh RUN each time
                words = [w.replace("ITEMS", items) for w in shlex.split(command)]
                words = [str(work / "runs" / f"{n}-{i}") if w == "RUN" else w for w in words]
                times.append(median_seconds([python, str(SHIM), *words], 1, work))
            medians[command] = statistics.median(times)

    base = medians["import_anthropic"]
    ratios = {name: round(value / base, 3) for name, value in medians.items() if name not in ("python_startup", "import_anthropic")}
    private_over_direct = round(medians["plan_10_private_venv"] / medians["plan_10"], 3)
    print(json.dumps({
        "benchmark": "startup",
        "python": python,
        "python_version": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                         capture_output=True, text=True).stdout.strip(),
        "runs": runs,
        "items": ITEM_COUNT,
        "median_seconds": {name: round(value, 4) for name, value in medians.items()},
        "ratio_to_import_anthropic": ratios,
        "private_venv_over_direct": private_over_direct,
        "target_ratio": TARGET_RATIO,
        "meets_target": all(ratios[name] < TARGET_RATIO for name in ("help", "plan_10")),
        "cpus": os.cpu_count(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
