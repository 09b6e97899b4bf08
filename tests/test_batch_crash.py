"""Kill -9 anywhere, re-run, converge: the batch executor's crash matrix, measured from the emulator's log.

Each scenario runs the CLI as a subprocess against an emulator started here (fixed data dir, request log),
with `BATCHPILOT_CRASH_AFTER` set so that the process SIGKILLs itself at one point — after the Nth journal
write, or at a named point such as between "create sent" and "batch id journaled" — then re-runs the same
command until it exits 0. Every scenario must end with exactly one create per shard per round in the
server's log and a merged.jsonl equal to the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_batch_cli import FAST, creates, log_lines, write_items

ITEMS = 12
SHARD = "5"  # 3 shards in round 1
# `run` writes 39 journal events for this job (3 + 2 + 1 shards over three rounds): writes 1-7 are submit,
# 8-10 status, 11-19 fetch, 20 and later the retry rounds. Crash after a spread of them.
RUN_POINTS = [f"journal:{n}" for n in (1, 2, 3, 5, 7, 8, 10, 11, 13, 14, 16, 19, 20, 22, 25, 29)]
NAMED_POINTS = ["after-create-before-journal", "mid-download", "after-download-before-journal", "mid-record"]
# The lifecycle commands one by one: (command that crashes, selector).
STEP_POINTS = [("submit", "after-create-before-journal"), ("retry", "journal:2")]
STEPS = [("submit",), ("status", "--wait"), ("fetch",), ("retry",), ("merge",)]


def cli(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchpilot", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def until_ok(cwd: Path, env: dict, args: tuple[str, ...], crash: str | None) -> int:
    """Run once with the crash selector, then without until exit 0; returns how many runs were killed."""
    killed = 0
    for attempt in range(6):
        e = dict(env, BATCHPILOT_CRASH_AFTER=crash) if crash and attempt == 0 else env
        done = cli(cwd, e, *args)
        if done.returncode == 0:
            return killed
        assert done.returncode == -9, f"{args} {crash}: exit {done.returncode}\n{done.stderr[-2000:]}"
        killed += 1
    raise AssertionError(f"{args} with {crash} did not converge")


def scenario(root: Path, name: str, mode: str, target: str | None, crash: str | None) -> dict:
    from batchpilot.emulator.http.server import Emulator
    from batchpilot.emulator.config import EmulatorConfig
    from batchpilot.emulator.behaviour.faults import FaultRule

    cwd = root / name
    cwd.mkdir()
    write_items(cwd / "items.jsonl", ITEMS)
    config = EmulatorConfig(seed=5, data_dir=str(cwd / "emu"), log_path=str(cwd / "emu.log"),
                            faults=[FaultRule("overloaded", 0.25), FaultRule("drop_results", 1.0, times=1)])
    with Emulator(config) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHPILOT_"))}
        env.update(FAST, ANTHROPIC_BASE_URL=emu.base_url, ANTHROPIC_API_KEY="test-key",
                   BATCHPILOT_MAX_BATCH_REQUESTS=SHARD)
        job = ("--template", "code-review", "--items", "items.jsonl", "--run", "job")
        killed = 0
        if mode == "run":
            killed += until_ok(cwd, env, ("run", *job, "--mode", "batch"), crash)
        else:
            assert cli(cwd, env, "prepare", *job).returncode == 0
            for step in STEPS:
                args = (step[0], "job", *step[1:])
                killed += until_ok(cwd, env, args, crash if step[0] == target else None)
        internal = emu.stats()["internal_errors"]
    journal = [json.loads(x) for x in (cwd / "job" / "journal.jsonl").read_text().splitlines()]
    shards = sum(len(e["shards"]) for e in journal if e["event"] == "round_planned")
    merged = [json.loads(x) for x in (cwd / "job" / "merged.jsonl").read_text().splitlines()]
    results = [json.loads(x) for x in (cwd / "job" / "results.jsonl").read_text().splitlines()]
    return {"name": name, "killed": killed, "creates": len(creates(log_lines(cwd / "emu.log"))), "shards": shards,
            "merged": merged, "results": len(results), "internal": internal}


def test_kill_anywhere_converges(tmp_path):
    cases = [("baseline-run", "run", None, None)]
    cases += [(f"run-{p.replace(':', '')}", "run", None, p) for p in RUN_POINTS + NAMED_POINTS]
    cases += [(f"{cmd}-{p.replace(':', '')}", "steps", cmd, p) for cmd, p in STEP_POINTS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        outs = list(pool.map(lambda c: scenario(tmp_path, *c), cases))
    base = outs[0]
    assert base["killed"] == 0 and base["shards"] > 3, "the job should need a retry round"
    assert {r["status"] for r in base["merged"]} == {"ok"}
    killed_points = 0
    for out in outs:
        assert out["internal"] == 0, out["name"]
        assert out["creates"] == out["shards"] == base["shards"], f"{out['name']}: {out['creates']} creates"
        assert out["merged"] == base["merged"], out["name"]
        assert out["results"] == base["results"], out["name"]
        killed_points += out["killed"] > 0
    assert killed_points >= 20, [o["name"] for o in outs if not o["killed"]]
