"""`batchpilot demo`: the offline rehearsal runs end to end with no key and no network.

How long it takes is a figure, not a test: `bench/bench_startup.py` times it (the `demo` row of bench/run_all.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from conftest import command


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_demo_runs_offline_end_to_end(bp, monkeypatch):
    monkeypatch.setenv("BATCHPILOT_POLL_MIN", "0.05")
    r = bp("demo")
    assert r.code == 0, r.stderr
    receipt = r.receipt
    run = Path(receipt["run"])
    assert run.parent == Path(".batchpilot/runs").absolute() and run.name.endswith("-demo")
    assert receipt["items"] == 8 and receipt["counts"]["ok"] == 8
    assert receipt["rounds"] == 2  # the injected faults make one retry round
    assert Path(receipt["report"]).exists() and (run / "report.md").exists()
    merged = [json.loads(x) for x in (run / "merged.jsonl").read_text().splitlines()]
    assert len(merged) == 8 and {m["status"] for m in merged} == {"ok"}
    assert "round 2: retrying 3 item(s)" in r.stderr and "demo done" in r.stderr
    # Quick because its emulator's clock runs fast, not because nothing is processed: each batch spends longer
    # in emulated time (created_at to ended_at) than the whole demo takes on the wall clock (the journal's `at`).
    journal = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    wall = _time(journal[-1]["at"]) - _time(journal[0]["at"])
    created = {e["batch_id"]: _time(e["created_at"]) for e in journal if e["event"] == "batch_created"}
    ended = {e["batch_id"]: _time(e["ended_at"]) for e in journal if e["event"] == "batch_ended"}
    assert len(created) == 2 and set(ended) == set(created), journal
    for batch_id, start in created.items():
        assert ended[batch_id] - start > wall, (batch_id, ended[batch_id] - start, wall)


def test_demo_into_a_given_run_dir_and_again(bp, tmp_path):
    r = bp("demo", "--run", "rehearsal")
    assert r.code == 0, r.stderr
    assert r.receipt["run"] == str(Path("rehearsal").absolute())
    again = bp("demo", "--run", "rehearsal")  # the same inputs: resumes, creates nothing new
    assert again.code == 0 and again.receipt["batches"] == r.receipt["batches"]
