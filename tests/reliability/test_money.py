"""Never billed twice, never a paid result lost: the batch side, counted from the emulator's request log.

* a results 404 for the first emulated minute after `ended` (the real API's propagation glitch): every
  result is fetched, nothing is recorded missing, no item is sent again;
* another client's batch of the same size created between our intent and our (refused, 529) create: a
  reconcile may adopt it provisionally, but its results carry other custom_ids, so it is disowned, none of
  its lines is recorded, and our shard is created once more;
* a create that made the batch but answered 529, under SDK 2.x (in process) and SDK 1.x (its own
  interpreter, where OverloadedError is no InternalServerError): reconciled, one batch, never created again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability.harness import api_starter, write_items

ITEMS = 8
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(emulator, monkeypatch, tmp_path):
    return api_starter(emulator, monkeypatch, tmp_path, seed=5)


def log_lines(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "emulator.log").read_text().splitlines()]


def creates(log: list[dict]) -> list[dict]:
    return [e for e in log if e["method"] == "POST" and e["path"] == "/v1/messages/batches"]


def merged(run: Path) -> dict[str, dict]:
    return {r["custom_id"]: r for r in map(json.loads, (run / "merged.jsonl").read_text().splitlines())}


def test_results_404_after_end_loses_nothing(bp, api, tmp_path):
    api(time_scale=60.0, results_not_found_after_end=60.0)  # one emulated minute = one wall second
    write_items(Path("items.jsonl"), ITEMS)
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch", "--run", "job")
    assert r.code == 0, r.stderr
    assert {m["status"] for m in merged(Path("job")).values()} == {"ok"}
    log = log_lines(tmp_path)
    glitches = [e for e in log if e["fault"] == "results_not_found_after_end"]
    assert glitches and all(e["status"] == 404 for e in glitches)
    ok = [e for e in creates(log) if e["status"] == 200]
    assert len(creates(log)) == 1 and ok[0]["requests"] == ITEMS  # no retry round bought anything again
    recorded = [json.loads(line) for line in Path("job/results.jsonl").read_text().splitlines()]
    assert len(recorded) == ITEMS


def _batch_run_under(bp, api, fault: str) -> list[dict]:
    """A batch `run` of ITEMS items against an emulator that injects `fault` once; it ends all ok. Its journal."""
    from batchpilot.emulator.behaviour.faults import FaultRule

    api(faults=[FaultRule(fault, times=1)])
    write_items(Path("items.jsonl"), ITEMS)
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch", "--run", "job")
    assert r.code == 0, r.stderr
    assert {m["status"] for m in merged(Path("job")).values()} == {"ok"}
    return [json.loads(line) for line in Path("job/journal.jsonl").read_text().splitlines()]


def test_foreign_batch_of_the_same_size_is_not_adopted(bp, api, tmp_path):
    events = _batch_run_under(bp, api, "foreign_batch")
    assert "foreign-" not in Path("job/results.jsonl").read_text()
    disowned = [e for e in events if e["event"] == "batch_disowned"]
    ours = [e["batch_id"] for e in events if e["event"] == "batch_created" and e["batch_id"] not in
            {d["batch_id"] for d in disowned}]
    assert len(disowned) == 1 and len(ours) == 1
    statuses = [e["status"] for e in creates(log_lines(tmp_path))]
    assert statuses == [529, 200]  # the refused create, then ours: one paid batch of ours


def test_create_answered_529_is_reconciled_not_created_again(bp, api, tmp_path):
    events = _batch_run_under(bp, api, "create_overloaded")
    assert [e["status"] for e in creates(log_lines(tmp_path))] == [529]  # made once, adopted, never re-sent
    assert [e["reconciled"] for e in events if e["event"] == "batch_created"] == [True]
    assert not [e for e in events if e["event"] == "create_refused"]


SDK1_SUBMIT = r'''
import json, sys
import anthropic
from batchpilot.core.progress import Progress
from batchpilot.executors.batch.state import load_state
from batchpilot.executors.batch.submit import ensure_first_round, submit_pending

run = sys.argv[1]
ensure_first_round(run, load_state(run))
client = anthropic.Anthropic(max_retries=0)
result = submit_pending(client, run, Progress(quiet=True))
print(json.dumps({"version": anthropic.__version__, "created": result.created, "reconciled": result.reconciled}))
'''


def test_create_answered_529_under_sdk1_is_reconciled(bp, api, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    python = os.environ.get("BATCHPILOT_SDK1_PYTHON") or str(ROOT / ".venv-sdk1" / "bin" / "python")
    if not Path(python).exists():
        pytest.fail("no 1.x SDK interpreter: run tests/run.py (it prepares .venv-sdk1)")
    emu = api(faults=[FaultRule("create_overloaded", times=1)])
    write_items(Path("items.jsonl"), ITEMS)
    assert bp("prepare", "-t", "code-review", "-i", "items.jsonl", "--run", "job").code == 0
    script = tmp_path / "submit_sdk1.py"
    script.write_text(SDK1_SUBMIT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "skills" / "batch-processing"), "ANTHROPIC_BASE_URL": emu.base_url}
    done = subprocess.run([python, str(script), "job"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["version"].startswith("1.") and len(out["created"] + out["reconciled"]) == 1
    assert [e["status"] for e in creates(log_lines(tmp_path))] == [529]
    events = [json.loads(line) for line in Path("job/journal.jsonl").read_text().splitlines()]
    assert [e["reconciled"] for e in events if e["event"] == "batch_created"] == [True]


# ------------------------------------------------------------------- typed again, killed, over budget, outage


def subprocess_api(tmp_path: Path, **config):
    from batchpilot.emulator.config import EmulatorConfig
    from batchpilot.emulator.http.server import Emulator

    config.setdefault("log_path", str(tmp_path / "emulator.log"))
    return Emulator(EmulatorConfig(seed=9, **config))


def test_batch_run_killed_after_its_create_and_typed_again_creates_once(tmp_path):
    from reliability.harness import Tap, clean_env, cli

    write_items(tmp_path / "items.jsonl", ITEMS)
    args = ("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch")
    with subprocess_api(tmp_path) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url)
        killed = cli(tmp_path, dict(env, BATCHPILOT_CRASH_AFTER="after-create-before-journal"), *args)
        assert killed.returncode == -9
        again = cli(tmp_path, env, *args)  # exactly as typed: no --run
        assert again.returncode == 0, again.stderr[-3000:]
        third = cli(tmp_path, env, *args)
        creates = [c for c in tap.snapshot() if c.kind == "create"]
    assert "resuming" in again.stderr and json.loads(again.stdout)["resumed"] is True
    assert len(creates) == 1 and len(creates[0].ids) == ITEMS  # the lost answer was reconciled, not re-bought
    runs = list((tmp_path / ".batchpilot" / "runs").glob("*/run.json"))
    assert len(runs) == 1
    assert {m["status"] for m in merged(runs[0].parent).values()} == {"ok"}
    # Typed a third time: the finished run is reported, not redone.
    assert third.returncode == 0 and json.loads(third.stdout)["finished"] is True and "already ran" in third.stderr


def test_direct_run_killed_mid_run_and_typed_again_sends_no_recorded_item_again(tmp_path):
    from reliability.harness import Tap, clean_env, cli, results, write_tiny_template

    write_items(tmp_path / "items.jsonl", 12)
    tpl = str(write_tiny_template(tmp_path))
    args = ("run", "-t", tpl, "-i", "items.jsonl", "--mode", "direct")
    with subprocess_api(tmp_path, latency=0.1) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url)
        killed = cli(tmp_path, dict(env, BATCHPILOT_CRASH_AFTER="append:results.jsonl:2"), *args)
        assert killed.returncode == -9
        run = next((tmp_path / ".batchpilot" / "runs").glob("*/run.json")).parent
        recorded = {r["custom_id"] for r in results(run) if r["result"]["type"] == "succeeded"}
        first = len(tap.snapshot())
        again = cli(tmp_path, env, *args)
        assert again.returncode == 0, again.stderr[-3000:]
        resent = [c.ids[0] for c in tap.snapshot()[first:] if c.kind == "message"]
    assert recorded and not recorded & set(resent)  # only items in flight at the kill went out again
    assert len(list((tmp_path / ".batchpilot" / "runs").glob("*/run.json"))) == 1
    assert {m["status"] for m in merged(run).values()} == {"ok"}


def test_max_cost_holds_across_three_kills(tmp_path):
    from batchpilot.core.models import Prices, cost_usd
    from reliability.harness import clean_env, cli, write_tiny_template

    write_items(tmp_path / "items.jsonl", 150)
    tpl = str(write_tiny_template(tmp_path))
    budget = 0.01  # some 60 of these tiny requests
    args = ("run", "-t", tpl, "-i", "items.jsonl", "--mode", "direct", "--max-cost", str(budget))
    with subprocess_api(tmp_path, latency=0.2) as emu:
        env = clean_env(emu.base_url)
        kills = 0
        for _ in range(3):  # killed with requests in flight, as soon as a few answers are recorded
            killed = cli(tmp_path, dict(env, BATCHPILOT_CRASH_AFTER="append:results.jsonl:2"), *args)
            if killed.returncode == 0:
                break  # the budget ran out before the kill point
            assert killed.returncode == -9, killed.stderr[-2000:]
            kills += 1
        last = cli(tmp_path, env, *args)
        assert last.returncode == 0, last.stderr[-3000:]
    assert kills >= 2
    run = next((tmp_path / ".batchpilot" / "runs").glob("*/run.json")).parent
    prices = json.loads((run / "run.json").read_text())["prices"]
    price = Prices(prices["input_per_mtok"], prices["output_per_mtok"], prices["read_multiplier"])
    paid = [cost_usd(price, e["usage"], batch=False) for e in log_lines(tmp_path)
            if e["path"] == "/v1/messages" and e["status"] == 200 and e["usage"]]
    assert len(paid) < 150  # the budget did stop the job
    assert sum(paid) <= budget + max(paid), (sum(paid), budget)
    receipt = json.loads(last.stdout)["direct"]
    assert receipt["budget_left_usd"] is not None and receipt["run_spent_usd"] <= budget + 1e-9


def start_emulate(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`batchpilot emulate` as its own process (so it can be killed like a real outage); (process, base URL)."""
    from reliability.harness import clean_env

    proc = subprocess.Popen([sys.executable, "-m", "batchpilot", "emulate", "--port", "0", *flags],
                            cwd=tmp_path, env=clean_env(None), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    return proc, json.loads(proc.stdout.readline())["base_url"]


def test_emulator_killed_mid_run_exits_1_and_the_rerun_finishes(tmp_path):
    from reliability.harness import assert_error_hint, clean_env, cli, results, write_tiny_template

    items = 100
    write_items(tmp_path / "items.jsonl", items)
    tpl = str(write_tiny_template(tmp_path))
    args = ("run", "-t", tpl, "-i", "items.jsonl", "--mode", "direct")
    emu, url = start_emulate(tmp_path, "--latency", "0.5")  # 32 at a time: about 2 s for the lot
    try:
        proc = subprocess.Popen([sys.executable, "-m", "batchpilot", *args], cwd=tmp_path, env=clean_env(url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not any(Path(tmp_path).glob(".batchpilot/runs/*/results.jsonl")) or \
                len(results(next(Path(tmp_path).glob(".batchpilot/runs/*/results.jsonl")).parent)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        emu.kill()  # the API goes away mid-run
        emu.wait()
    out, err = proc.communicate(timeout=120)
    assert_error_hint(proc.returncode, err, out, codes=(1,))
    assert "cannot reach the API" in err and "answered" in err
    run = next(Path(tmp_path).glob(".batchpilot/runs/*/run.json")).parent
    answered = len(results(run))
    assert 3 <= answered < items  # the rest were not recorded as failures: they stay to be sent
    back, url = start_emulate(tmp_path)
    try:
        again = cli(tmp_path, clean_env(url), *args)
    finally:
        back.kill()
        back.wait()
    assert again.returncode == 0, again.stderr[-3000:]
    assert {m["status"] for m in merged(run).values()} == {"ok"} and len(merged(run)) == items


def test_a_run_json_whose_fingerprint_was_edited_is_not_taken_for_this_job(bp, api, tmp_path):
    # Two jobs (the same items, different --max-tokens) ran and finished. Someone hand-edits the newer run's
    # job_fingerprint to the older job's: typing the older job again must not report the other job's results
    # as its own (the fingerprint no longer matches the run's own inputs), and must not buy anything again.
    api()
    write_items(Path("items.jsonl"), ITEMS)
    job = ("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch")
    first = bp(*job)
    other = bp(*job, "--max-tokens", "999")
    assert first.code == 0 and other.code == 0, first.stderr + other.stderr
    mine, theirs = Path(json.loads(first.stdout)["run"]), Path(json.loads(other.stdout)["run"])
    manifest = json.loads((theirs / "run.json").read_text())
    manifest["job_fingerprint"] = json.loads((mine / "run.json").read_text())["job_fingerprint"]
    (theirs / "run.json").write_text(json.dumps(manifest))
    again = bp(*job)
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["run"] == str(mine) and json.loads(again.stdout)["finished"] is True
    assert len(creates(log_lines(tmp_path))) == 2
    # The edited run is still its own job's: typed again, that job is reported, not bought again.
    theirs_again = bp(*job, "--max-tokens", "999")
    assert theirs_again.code == 0 and json.loads(theirs_again.stdout)["run"] == str(theirs)
    assert len(creates(log_lines(tmp_path))) == 2
