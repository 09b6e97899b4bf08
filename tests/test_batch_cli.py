"""Batch mode through the CLI against the emulator: submit, status, fetch, retry, cancel, run, listing.

Everything is measured from the emulator's request log (the server's view), not from batchpilot's receipts.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import command

FAST = {"BATCHPILOT_POLL_MIN": "0.02", "BATCHPILOT_POLL_MAX": "0.1", "BATCHPILOT_BATCH_RPM": "1000000"}


def write_items(path: Path, n: int, prefix: str = "item") -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"{prefix}-{i:05d}", "content": f"def f{i}(x):\n    return x + {i}\n"}) + "\n")
    return path


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def creates(log: list[dict]) -> list[dict]:
    return [e for e in log if e["method"] == "POST" and e["path"] == "/v1/messages/batches"]


@pytest.fixture
def api(emulator, monkeypatch, tmp_path):
    """Start an emulator with these config fields (its log named `name`); point the CLI at it (dummy key, fast polling)."""
    def start(name: str = "emulator", **config):
        config.setdefault("log_path", str(tmp_path / f"{name}.log"))
        emu = emulator(**config)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        for k, v in FAST.items():
            monkeypatch.setenv(k, v)
        emu.log_file = Path(config["log_path"])
        return emu
    return start


def prepare(bp, n: int, run: str = "run") -> Path:
    items = write_items(Path("items.jsonl"), n)
    r = bp("prepare", "--template", "code-review", "--items", items, "--run", run)
    assert r.code == 0, r.stderr
    return Path(run)


def merged(run: Path) -> dict[str, str]:
    return {rec["custom_id"]: rec["status"] for rec in map(json.loads, (run / "merged.jsonl").read_text().splitlines())}


def test_submit_status_fetch_merge_one_create_per_shard(bp, api, monkeypatch):
    emu = api()
    run = prepare(bp, 30)
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_REQUESTS", "12")
    r = bp("submit", run)
    assert r.code == 0, r.stderr
    assert len(r.receipt["created"]) == 3 and r.receipt["pending_shards"] == 0
    assert r.receipt["next"] == command("status", Path(run), "--wait")
    again = bp("submit", run)  # nothing pending: no new create
    assert again.code == 0 and again.receipt["created"] == []
    r = bp("status", run, "--wait")
    assert r.code == 0, r.stderr
    assert r.receipt["ended"] and r.receipt["counts"]["succeeded"] == 30
    assert "fetch" in r.receipt["next"]
    r = bp("fetch", run)
    assert r.code == 0, r.stderr
    assert r.receipt["counts"] == {"succeeded": 30} and r.receipt["missing"] == 0
    assert bp("fetch", run).receipt["fetched"] == []  # fetched once, never again
    records = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    assert len(records) == 30 and len({x["custom_id"] for x in records}) == 30
    assert all(x["mode"] == "batch" and x["attempt"] == 1 and x["batch_id"].startswith("msgbatch_") and x["at"] for x in records)
    log = log_lines(emu.log_file)
    assert [c["requests"] for c in creates(log)] == [12, 12, 6]
    assert sum(1 for e in log if e["path"].endswith("/results")) == 3
    assert bp("merge", run).code == 0
    assert set(merged(run).values()) == {"ok"}


def test_faults_end_ok_after_retry_rounds(bp, api, monkeypatch):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = api(faults=[FaultRule("overloaded", 0.03), FaultRule("expired", 0.02)], seed=3)
    items = write_items(Path("items.jsonl"), 300)
    r = bp("run", "--template", "code-review", "--items", items, "--mode", "batch", "--run", "job")
    assert r.code == 0, r.stderr
    assert r.receipt["counts"]["ok"] == 300, r.receipt
    assert r.receipt["rounds"] >= 2
    stats = emu.stats()["faults"]
    assert stats.get("line:overloaded_error", 0) > 0 and stats.get("line:expired", 0) > 0
    log = log_lines(emu.log_file)
    rounds = [json.loads(x) for x in Path("job/journal.jsonl").read_text().splitlines() if '"round_planned"' in x]
    assert len(creates(log)) == sum(len(x["shards"]) for x in rounds)  # one create per shard per round
    assert rounds[1]["requests"] == sum(rounds[1]["selected"].values()) < 40
    assert set(merged(Path("job")).values()) == {"ok"}
    assert Path("job/report.html").exists()


def test_billing_errors_stop_the_job_after_one_round(bp, api):
    from batchpilot.emulator.behaviour.faults import FaultRule

    message = "Your credit balance is too low to access the Anthropic API."
    emu = api(faults=[FaultRule("billing", 1.0)])
    items = write_items(Path("items.jsonl"), 20)
    r = bp("run", "--template", "code-review", "--items", items, "--mode", "batch", "--run", "job")
    assert r.code == 1
    assert f"Error: the API refused the account (billing_error: {message}" in r.stderr and "the run stopped" in r.stderr
    assert "Hint:" in r.stderr and "billing" in r.stderr
    assert len(creates(log_lines(emu.log_file))) == 1  # no resubmission storm
    again = bp("run", "--template", "code-review", "--items", items, "--mode", "batch", "--run", "job")
    assert again.code == 1 and "billing_error" in again.stderr
    assert len(creates(log_lines(emu.log_file))) == 1
    assert Path("job/merged.jsonl").exists()


def test_cut_download_completes_with_each_result_once(bp, api):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = api(faults=[FaultRule("drop_results", 1.0, times=1)])
    run = prepare(bp, 40)
    assert bp("submit", run).code == 0
    assert bp("status", run, "--wait").code == 0
    r = bp("fetch", run)
    assert r.code == 0, r.stderr
    assert "download 1 broke" in r.stderr
    ids = [json.loads(x)["custom_id"] for x in (run / "results.jsonl").read_text().splitlines()]
    assert len(ids) == 40 == len(set(ids))
    log = log_lines(emu.log_file)
    downloads = [e for e in log if e["path"].endswith("/results")]
    assert [d["fault"] for d in downloads] == ["drop_results", None]
    assert not list((run / "batches").glob("*.part"))


def test_queue_limit_submits_next_shard_as_earlier_ones_drain(bp, api, monkeypatch):
    emu = api(batch_queue_limit=10, batch_speed=100)
    run = prepare(bp, 25)
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_REQUESTS", "10")
    r = bp("submit", run)
    assert r.code == 0, r.stderr
    assert len(r.receipt["created"]) == 1 and r.receipt["pending_shards"] == 2 and r.receipt["blocked"]
    r = bp("status", run, "--wait")
    assert r.code == 0, r.stderr
    assert r.receipt["ended"] and r.receipt["counts"]["succeeded"] == 25
    ok = [c for c in creates(log_lines(emu.log_file)) if c["status"] == 200]
    assert [c["requests"] for c in ok] == [10, 10, 5]


def test_404_right_after_create_is_transient(bp, api):
    emu = api(not_found_after_create=0.3)
    run = prepare(bp, 5)
    assert bp("submit", run).code == 0
    r = bp("status", run, "--wait")
    assert r.code == 0, r.stderr
    assert r.receipt["counts"]["succeeded"] == 5
    assert any(e["status"] == 404 for e in log_lines(emu.log_file))


def test_unanswered_create_is_reconciled_not_repeated(bp, api, monkeypatch):
    """An intent journaled without its batch id (the process died after sending) adopts the batch it made."""
    from batchpilot.executors.batch.state import load_state, record
    from batchpilot.executors.batch.submit import ensure_first_round

    import anthropic

    emu = api()
    run = prepare(bp, 6)
    ensure_first_round(run, load_state(run))
    shard = load_state(run).rounds[1].shards[0]
    record(run, "submit_intent", round=1, shard=1, attempt=1, requests=6, bytes=shard.bytes, sha256=shard.sha256)
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k")
    body = b"".join(__import__("batchpilot.executors.batch.shards", fromlist=["x"]).ShardBody(run / "requests.jsonl", shard))
    made = client.post("/v1/messages/batches", cast_to=anthropic.types.messages.MessageBatch, content=body)
    r = bp("submit", run)
    assert r.code == 0, r.stderr
    assert r.receipt["reconciled"] == [made.id] and r.receipt["created"] == []
    assert len(creates(log_lines(emu.log_file))) == 1


def test_two_candidates_stop_with_their_names(bp, api):
    from batchpilot.executors.batch.state import load_state, record
    from batchpilot.executors.batch.shards import ShardBody
    from batchpilot.executors.batch.submit import ensure_first_round

    import anthropic

    emu = api()
    run = prepare(bp, 4)
    ensure_first_round(run, load_state(run))
    shard = load_state(run).rounds[1].shards[0]
    record(run, "submit_intent", round=1, shard=1, attempt=1, requests=4, bytes=shard.bytes, sha256=shard.sha256)
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k")
    ids = [client.post("/v1/messages/batches", cast_to=anthropic.types.messages.MessageBatch,
                       content=b"".join(ShardBody(run / "requests.jsonl", shard))).id for _ in range(2)]
    r = bp("submit", run)
    assert r.code == 1
    assert all(i in r.stderr for i in ids) and "Hint:" in r.stderr
    assert len(creates(log_lines(emu.log_file))) == 2


def test_cancel_keeps_finished_results(bp, api):
    emu = api(batch_speed=20, cancel_delay=0.1)
    run = prepare(bp, 60)
    assert bp("submit", run).code == 0
    r = bp("cancel", run)
    assert r.code == 0, r.stderr
    assert len(r.receipt["canceled"]) == 1
    counts = r.receipt["counts"]
    assert counts.get("canceled", 0) > 0 and sum(counts.values()) == 60
    assert len((run / "results.jsonl").read_text().splitlines()) == 60
    assert any(e["path"].endswith("/cancel") for e in log_lines(emu.log_file))
    r = bp("retry", run, "--only", "canceled")
    assert r.code == 0, r.stderr
    assert bp("merge", run).code == 0
    assert set(merged(run).values()) == {"ok"}


def test_batches_listing_names_the_run(bp, api):
    api()
    run = prepare(bp, 3, run=".batchpilot/runs/listed")
    r = bp("submit", run)
    r2 = bp("batches")
    assert r2.code == 0, r2.stderr
    row = next(b for b in r2.receipt["batches"] if b["id"] == r.receipt["created"][0])
    assert row["run"] == str(run)


def test_emulate_persists_across_processes(bp):
    run = prepare(bp, 5)
    r = bp("submit", run, "--emulate")
    assert r.code == 0, r.stderr
    # The run remembers it is emulated: the suggested commands need no --emulate, and work without it.
    assert r.receipt["emulated"] is True and "--emulate" not in r.receipt["next"]
    r = bp("status", run, "--wait")
    assert r.code == 0, r.stderr
    assert r.receipt["counts"]["succeeded"] == 5
    r = bp("fetch", run, "--emulate")  # a redundant --emulate is accepted
    assert r.code == 0 and r.receipt["counts"] == {"succeeded": 5}
    assert (run / "emulator" / "state.json").exists()


def test_without_key_api_commands_point_at_the_keyless_modes(bp):
    run = prepare(bp, 2)
    r = bp("submit", run)
    assert r.code == 1 and "ANTHROPIC_API_KEY" in r.stderr and "agents or headless" in r.stderr
    assert "placeholder" in r.stderr  # --emulate is named as a rehearsal, never as the way to get results


def test_retry_only_invalid_needs_a_submitted_batch_run(bp):
    run = prepare(bp, 2)  # the repair itself: tests/test_repair.py
    r = bp("retry", run, "--only", "invalid")
    assert r.code == 1 and "has not been submitted yet" in r.stderr and "--mode direct" in r.stderr


def test_status_with_the_api_unreachable_is_an_error_not_stale_counts(bp, monkeypatch, emulator):
    api = emulator(batch_speed=0.001)  # plays the API; its batches stay open
    closed = os.environ["ANTHROPIC_BASE_URL"]  # a closed port (conftest)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    run = prepare(bp, 3)
    assert bp("submit", run).code == 0
    before = (run / "journal.jsonl").read_bytes()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", closed)
    monkeypatch.setenv("BATCHPILOT_POLL_MIN", "0.01")
    monkeypatch.setenv("BATCHPILOT_POLL_MAX", "0.02")
    for args in ((), ("--wait",)):
        r = bp("status", run, *args)
        assert r.code == 1, (args, r.stdout)
        assert "Error: cannot reach the API" in r.stderr and "Hint:" in r.stderr
    assert (run / "journal.jsonl").read_bytes() == before  # nothing recorded; the run resumes once the API answers
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    assert bp("status", run).code == 0


def test_status_of_an_ended_run_answers_from_the_journal_without_the_api(bp):
    run = prepare(bp, 3)
    assert bp("status", run, "--wait", "--emulate").code == 1  # nothing submitted yet: an error with a hint
    assert bp("submit", run, "--emulate").code == 0
    assert bp("status", run, "--wait", "--emulate").code == 0
    # No key, no --emulate, and the base URL is a closed port: the journal alone answers.
    r = bp("status", run)
    assert r.code == 0, r.stderr
    assert r.receipt["ended"] is True and r.receipt["counts"]["succeeded"] == 3


def test_rounds_stop_when_a_retry_round_makes_no_progress(bp, api):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = api(faults=[FaultRule("expired", 1.0, match="^item-0000[0-2]$")])  # these three expire every time
    items = write_items(Path("items.jsonl"), 10)
    r = bp("run", "--template", "code-review", "--items", items, "--mode", "batch", "--run", "job", "--max-rounds", "6")
    assert r.code == 0, r.stderr
    assert r.receipt["stopped"] == "round 2 made no progress", r.receipt
    assert len(creates(log_lines(emu.log_file))) == 2  # round 1 and one retry round, not six
    assert sorted(k for k, v in merged(Path("job")).items() if v != "ok") == ["item-00000", "item-00001", "item-00002"]


def test_results_near_the_29_day_limit_are_warned_about(bp, api):
    api()
    run = prepare(bp, 3)
    assert bp("submit", run).code == 0
    assert bp("status", run, "--wait").code == 0  # ended, results not fetched yet
    journal = run / "journal.jsonl"
    lines = journal.read_text().splitlines()
    old = (datetime.now(timezone.utc) - timedelta(days=26)).isoformat().replace("+00:00", "Z")
    aged = [json.dumps({**json.loads(l), "created_at": old}) if '"batch_created"' in l else l for l in lines]
    journal.write_text("\n".join(aged) + "\n")
    r = bp("status", run)
    assert r.code == 0
    assert "Warning: batch" in r.stderr and "26 days ago" in r.stderr and "29 days" in r.stderr
    assert "Warning" not in bp("fetch", run).stderr.split("recorded")[-1]  # fetched now: nothing left to warn about
    assert "Warning" not in bp("status", run).stderr
