"""Two copies of each writing command on one run: one does the work, the other exits 1 at once naming it.

For submit, fetch, retry, merge (batch), direct, fanout and collect (agents) and headless, the first copy is
started as a real subprocess and, the moment it holds the run lock (its pid is in `RUN/.lock`), suspended
with SIGSTOP, as Ctrl-Z would; the second copy is started then. It must exit 1 with an `Error:` naming the
holder's pid and command and a `Hint:`. The first is resumed and must finish normally. Counted on the
server's side afterwards (the emulator's tap, or the stand-in claude's log): no paid call made twice, and
results.jsonl holds each record once.

Also: two `run` commands typed at once without `--run` make one run and one batch, and a plain `status`
answers (from the journal) while a writer holds the lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reliability.harness import Tap, clean_env, cli, results, write_items, write_tiny_template

ITEMS = 6


def emulator(cwd: Path, **config):
    from batchpilot.emulator.config import EmulatorConfig
    from batchpilot.emulator.http.server import Emulator

    return Emulator(EmulatorConfig(seed=11, log_path=str(cwd / "emu.log"), **config))


def popen(cwd: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchpilot", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def holder_pid(lock: Path) -> int | None:
    try:
        return json.loads(lock.read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def contend(cwd: Path, env: dict, run: Path, *args: str) -> subprocess.CompletedProcess:
    """Start `args`, suspend it once it holds the run lock, run a second copy, resume the first.
    Returns the second copy's result; asserts the first finished with exit 0."""
    first = popen(cwd, env, *args)
    lock = cwd / run / ".lock"
    deadline = time.monotonic() + 60
    while holder_pid(lock) != first.pid:
        assert first.poll() is None, f"{args} ended before it was caught holding the lock: {first.communicate()}"
        assert time.monotonic() < deadline, "the first copy never took the run lock"
        time.sleep(0.0005)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = cli(cwd, env, *args, timeout=60)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 1, second.stderr[-3000:]
    lines = second.stderr.splitlines()
    error = next(l for l in lines if l.startswith("Error: "))
    assert f"pid {first.pid}" in error and f"batchpilot {args[0]}" in error, error
    assert any(l.startswith("Hint: ") for l in lines) and "Traceback" not in second.stderr
    return second


def no_duplicate_records(run: Path) -> None:
    counts = Counter((r["custom_id"], r.get("batch_id"), r["attempt"]) for r in results(run))
    assert counts and max(counts.values()) == 1, counts.most_common(3)


def test_batch_commands_one_at_a_time(tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    write_items(tmp_path / "items.jsonl", ITEMS)
    with emulator(tmp_path, faults=[FaultRule("expired", match="^item-0001$")]) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url)
        assert cli(tmp_path, env, "prepare", "-t", "code-review", "-i", "items.jsonl", "--run", "job").returncode == 0
        contend(tmp_path, env, Path("job"), "submit", "job")
        assert cli(tmp_path, env, "status", "job", "--wait").returncode == 0
        contend(tmp_path, env, Path("job"), "fetch", "job")
        assert len(results(tmp_path / "job")) == ITEMS
        contend(tmp_path, env, Path("job"), "retry", "job")
        contend(tmp_path, env, Path("job"), "merge", "job")
        creates = [c for c in tap.snapshot() if c.kind == "create"]
    # One create for the run and one for the retry round (the expired item alone): no batch bought twice.
    assert [len(c.ids) for c in creates] == [ITEMS, 1]
    no_duplicate_records(tmp_path / "job")
    merged = [json.loads(l) for l in (tmp_path / "job" / "merged.jsonl").read_text().splitlines()]
    assert len(merged) == ITEMS


def test_direct_one_at_a_time_sends_each_item_once(tmp_path):
    write_items(tmp_path / "items.jsonl", ITEMS)
    with emulator(tmp_path, latency=0.2) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url)
        tpl = str(write_tiny_template(tmp_path))  # the item's id is in its text: the tap can name each request
        assert cli(tmp_path, env, "prepare", "-t", tpl, "-i", "items.jsonl", "--mode", "direct",
                   "--run", "job").returncode == 0
        contend(tmp_path, env, Path("job"), "direct", "job")
        sent = Counter(c.ids[0] for c in tap.snapshot() if c.kind == "message")
    assert len(sent) == ITEMS and max(sent.values()) == 1
    no_duplicate_records(tmp_path / "job")


def test_agents_fanout_and_collect_one_at_a_time(tmp_path):
    write_items(tmp_path / "items.jsonl", ITEMS)
    env = clean_env(None)
    assert cli(tmp_path, env, "prepare", "-t", "code-review", "-i", "items.jsonl", "--mode", "agents",
               "--run", "job").returncode == 0
    contend(tmp_path, env, Path("job"), "fanout", "job")
    for line in (tmp_path / "job" / "items.jsonl").read_text().splitlines():
        cid = json.loads(line)["custom_id"]
        (tmp_path / "job" / "outputs" / f"{cid}.json").write_text(json.dumps({"findings": [], "summary": "ok"}))
    contend(tmp_path, env, Path("job"), "collect", "job")
    assert len(results(tmp_path / "job")) == ITEMS
    no_duplicate_records(tmp_path / "job")


FAKE_CLAUDE = """#!{python}
import json, os, sys
prompt = sys.stdin.read()
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps({{"prompt": prompt[-200:]}}) + "\\n")
out = {{"findings": [], "summary": "ok"}}
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "result": json.dumps(out),
                  "structured_output": out, "total_cost_usd": 0.01, "usage": {{"input_tokens": 7, "output_tokens": 3}}}}))
"""


def test_headless_one_at_a_time_calls_claude_once_per_item(tmp_path):
    fake = tmp_path / "fake-claude"
    fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
    fake.chmod(0o755)
    write_items(tmp_path / "items.jsonl", ITEMS)
    env = clean_env(None, FAKE_LOG=str(tmp_path / "claude.log"), BATCHPILOT_CLAUDE=str(fake))
    assert cli(tmp_path, env, "prepare", "-t", "code-review", "-i", "items.jsonl", "--mode", "headless",
               "--run", "job").returncode == 0
    contend(tmp_path, env, Path("job"), "headless", "job", "--parallel", "1")
    calls = (tmp_path / "claude.log").read_text().splitlines()
    assert len(calls) == ITEMS  # one paid claude call per item, none from the second copy
    no_duplicate_records(tmp_path / "job")


def test_status_answers_while_a_writer_holds_the_lock(tmp_path):
    write_items(tmp_path / "items.jsonl", ITEMS)
    with emulator(tmp_path, batch_speed=0.5) as emu:
        env = clean_env(emu.base_url)
        assert cli(tmp_path, env, "prepare", "-t", "code-review", "-i", "items.jsonl", "--run", "job").returncode == 0
        assert cli(tmp_path, env, "submit", "job").returncode == 0
        waiting = popen(tmp_path, env, "status", "job", "--wait")
        try:
            deadline = time.monotonic() + 60
            while holder_pid(tmp_path / "job" / ".lock") != waiting.pid:
                assert waiting.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
            plain = cli(tmp_path, env, "status", "job")
        finally:
            waiting.kill()
            waiting.communicate()
    assert plain.returncode == 0, plain.stderr
    receipt = json.loads(plain.stdout)
    assert receipt["locked_by"]["pid"] == waiting.pid and receipt["ended"] is False


def test_two_runs_typed_at_once_make_one_run_and_one_batch(tmp_path):
    write_items(tmp_path / "items.jsonl", ITEMS)
    with emulator(tmp_path, batch_speed=20.0) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url)
        args = ("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch")
        both = [popen(tmp_path, env, *args), popen(tmp_path, env, *args)]
        done = [(p.wait(timeout=120), *p.communicate()) for p in both]
        creates = [c for c in tap.snapshot() if c.kind == "create"]
    codes = sorted(code for code, _, _ in done)
    assert codes == [0, 1], done
    loser = next(err for code, _, err in done if code == 1)
    assert "is locked by another process: pid" in loser and "Hint: " in loser
    assert len(list((tmp_path / ".batchpilot" / "runs").glob("*/run.json"))) == 1
    assert len(creates) == 1 and len(creates[0].ids) == ITEMS
