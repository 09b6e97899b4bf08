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
from pathlib import Path

import pytest

from reliability.harness import FAST, write_items

ITEMS = 8
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(emulator, monkeypatch, tmp_path):
    def start(**config):
        config.setdefault("log_path", str(tmp_path / "emulator.log"))
        emu = emulator(seed=5, **config)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        for k, v in FAST.items():
            monkeypatch.setenv(k, v)
        return emu
    return start


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


def test_foreign_batch_of_the_same_size_is_not_adopted(bp, api, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    api(faults=[FaultRule("foreign_batch", times=1)])
    write_items(Path("items.jsonl"), ITEMS)
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch", "--run", "job")
    assert r.code == 0, r.stderr
    assert {m["status"] for m in merged(Path("job")).values()} == {"ok"}
    assert "foreign-" not in Path("job/results.jsonl").read_text()
    events = [json.loads(line) for line in Path("job/journal.jsonl").read_text().splitlines()]
    disowned = [e for e in events if e["event"] == "batch_disowned"]
    ours = [e["batch_id"] for e in events if e["event"] == "batch_created" and e["batch_id"] not in
            {d["batch_id"] for d in disowned}]
    assert len(disowned) == 1 and len(ours) == 1
    statuses = [e["status"] for e in creates(log_lines(tmp_path))]
    assert statuses == [529, 200]  # the refused create, then ours: one paid batch of ours


def test_create_answered_529_is_reconciled_not_created_again(bp, api, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    api(faults=[FaultRule("create_overloaded", times=1)])
    write_items(Path("items.jsonl"), ITEMS)
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch", "--run", "job")
    assert r.code == 0, r.stderr
    assert {m["status"] for m in merged(Path("job")).values()} == {"ok"}
    assert [e["status"] for e in creates(log_lines(tmp_path))] == [529]  # made once, adopted, never re-sent
    events = [json.loads(line) for line in Path("job/journal.jsonl").read_text().splitlines()]
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
