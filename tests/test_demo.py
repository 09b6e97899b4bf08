"""`batchpilot demo`: the offline rehearsal runs end to end with no key and no network, fast."""

from __future__ import annotations

import json
import time
from pathlib import Path


def test_demo_runs_offline_end_to_end(bp, monkeypatch):
    monkeypatch.setenv("BATCHPILOT_POLL_MIN", "0.05")
    started = time.monotonic()
    r = bp("demo")
    elapsed = time.monotonic() - started
    assert r.code == 0, r.stderr
    receipt = r.receipt
    run = Path(receipt["run"])
    assert run.parent == Path(".batchpilot/runs") and run.name.endswith("-demo")
    assert receipt["items"] == 8 and receipt["counts"]["ok"] == 8
    assert receipt["rounds"] == 2  # the injected faults make one retry round
    assert Path(receipt["report"]).exists() and (run / "report.md").exists()
    merged = [json.loads(x) for x in (run / "merged.jsonl").read_text().splitlines()]
    assert len(merged) == 8 and {m["status"] for m in merged} == {"ok"}
    assert "round 2: retrying 3 item(s)" in r.stderr and "demo done" in r.stderr
    assert elapsed < 30


def test_demo_into_a_given_run_dir_and_again(bp, tmp_path):
    r = bp("demo", "--run", "rehearsal")
    assert r.code == 0, r.stderr
    assert r.receipt["run"] == "rehearsal"
    again = bp("demo", "--run", "rehearsal")  # the same inputs: resumes, creates nothing new
    assert again.code == 0 and again.receipt["batches"] == r.receipt["batches"]
