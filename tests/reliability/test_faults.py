"""The emulator's fault matrix through batch mode (`run --mode batch`, then `retry`) and direct mode
(`run --mode direct`, then `direct` again to resume): every item ends `ok`, or is listed with its reason.

Counts: 2 batch matrices and 1 direct matrix (3 tests), 12 fault kinds in all:
* batch: overloaded and api_error lines (500/529 inside a batch), expired lines, errored lines
  (invalid_request_error), invalid JSON output, truncation at max_tokens, a refusal, the results download
  cut mid-stream, 404 on retrieve just after create, and 429s on the batch endpoints (a low batch RPM);
* direct: a 429 storm (half of all requests), 500 and 529 bursts, a 400, invalid JSON output, truncation, a
  refusal and slow answers, resumed by running `direct` again.

"Listed with its reason": a non-ok item's merged record has `error: {type, message}` with both non-empty,
and summary.json's `failures` names it with the same status and type. Items the faults target by id must
end in the status that fault implies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reliability.harness import api_starter, write_items, write_tiny_template

ITEMS = 16


@pytest.fixture
def api(emulator, monkeypatch, tmp_path):
    return api_starter(emulator, monkeypatch, tmp_path, seed=3)


def check_listed(run: Path, expect: dict[str, str]) -> dict[str, dict]:
    """Every item ok or listed with its reason; the targeted items in the status their fault implies."""
    merged = {r["custom_id"]: r for r in map(json.loads, (run / "merged.jsonl").read_text().splitlines())}
    summary = json.loads((run / "summary.json").read_text())
    failures = {f["custom_id"]: f for f in summary["failures"]}
    assert len(merged) == ITEMS and summary["items"] == ITEMS
    for cid, rec in merged.items():
        if rec["status"] == "ok":
            assert rec["output"] is not None and rec["error"] is None, rec
            continue
        assert rec["status"] in ("invalid", "errored", "expired", "canceled", "missing"), rec
        assert rec["error"]["type"] and rec["error"]["message"], rec
        assert failures[cid]["status"] == rec["status"] and failures[cid]["type"] == rec["error"]["type"], cid
    assert summary["failures_total"] == sum(r["status"] != "ok" for r in merged.values())
    for cid, status in expect.items():
        assert merged[cid]["status"] == status, (cid, merged[cid])
    return merged


def emulator_clean(emu) -> None:
    assert emu.stats()["internal_errors"] == 0


def test_batch_fault_matrix_then_retry(bp, api):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = api(not_found_after_create=0.3, batch_requests_per_minute=30, faults=[
        FaultRule("errored", match="^item-0001$"), FaultRule("invalid_json", match="^item-0002$"),
        FaultRule("truncate", match="^item-0003$"), FaultRule("refusal", match="^item-0004$"),
        FaultRule("overloaded", 0.3), FaultRule("api_error", 0.2), FaultRule("expired", 0.2),
        FaultRule("drop_results", 1.0, times=2)])
    write_items(Path("items.jsonl"), ITEMS)
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch", "--run", "job", "--max-rounds", "2")
    assert r.code == 0, r.stderr
    assert bp("retry", "job").code == 0
    assert bp("merge", "job").code == 0
    merged = check_listed(Path("job"), {"item-0001": "errored", "item-0002": "invalid", "item-0003": "invalid",
                                        "item-0004": "invalid"})
    assert merged["item-0001"]["error"]["type"] == "invalid_request_error"
    assert sum(r["status"] == "ok" for r in merged.values()) >= ITEMS - 6
    log = [json.loads(x) for x in Path("emulator.log").read_text().splitlines()]
    assert any(e["status"] == 404 for e in log) and any(e["status"] == 429 for e in log), "the faults did not fire"
    emulator_clean(emu)


def test_batch_everything_expires_is_listed_as_expired(bp, api):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = api(faults=[FaultRule("expired", 1.0)])
    write_items(Path("items.jsonl"), ITEMS)
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "batch", "--run", "job", "--max-rounds", "2")
    assert r.code == 0, r.stderr
    merged = check_listed(Path("job"), {f"item-{i:04d}": "expired" for i in range(ITEMS)})
    assert all(r["attempts"] == 2 for r in merged.values())
    emulator_clean(emu)


def direct_job(bp, *extra: str) -> Path:
    write_items(Path("items.jsonl"), ITEMS)
    tpl = write_tiny_template(Path("."))
    r = bp("run", "-t", tpl, "-i", "items.jsonl", "--mode", "direct", "--run", "job", *extra)
    assert r.code == 0, r.stderr
    return Path("job")


def test_direct_fault_matrix_then_resume(bp, api):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = api(slow_seconds=0.2, faults=[
        FaultRule("errored", match="item-0001"), FaultRule("invalid_json", match="item-0002"),
        FaultRule("truncate", match="item-0003"), FaultRule("refusal", match="item-0004"),
        FaultRule("slow", match="item-0005"),
        FaultRule("rate_limit", 0.5), FaultRule("overloaded", 0.25), FaultRule("api_error", 0.25)])
    run = direct_job(bp)
    again = bp("direct", run)
    assert again.code == 0, again.stderr
    assert again.receipt["counts"]["skipped_already_done"] >= ITEMS - 4
    assert bp("merge", run).code == 0
    merged = check_listed(run, {"item-0001": "errored", "item-0002": "invalid", "item-0003": "invalid",
                                "item-0004": "invalid", "item-0005": "ok"})
    assert merged["item-0001"]["error"]["type"] == "invalid_request_error"
    assert sum(r["status"] == "ok" for r in merged.values()) == ITEMS - 4
    stats = emu.stats()
    assert stats["internal_errors"] == 0 and stats["rate_limited"] > 0
