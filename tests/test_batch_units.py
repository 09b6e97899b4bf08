"""The batch executor's pure parts: shard planning and bodies, the ledger, classification, account stops."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from batchpilot.core.errors import BatchpilotError
from batchpilot.executors.batch.shards import ShardBody, edge_ids, iter_shard_ids, limits, plan_shards


def write_requests(path: Path, n: int, pad=lambda i: "x" * (i % 13)) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"custom_id": f"r-{i}", "params": {"t": pad(i) + "é"}}, separators=(",", ":"),
                                ensure_ascii=False) + "\n")
    return path


@pytest.mark.parametrize("n, max_requests, max_bytes", [(1, 10, 10_000), (500, 100, 10_000_000), (500, 1000, 4_000),
                                                        (97, 7, 900)])
def test_shards_respect_both_limits_and_bodies_are_exact(tmp_path, n, max_requests, max_bytes):
    path = write_requests(tmp_path / "r.jsonl", n)
    shards = plan_shards(path, max_requests, max_bytes)
    ids = []
    for s in shards:
        body = ShardBody(path, s)
        data = body.read()
        assert len(data) == s.bytes == len(body) <= max_bytes
        assert s.requests <= max_requests
        assert hashlib.sha256(data).hexdigest() == s.sha256
        parsed = json.loads(data)["requests"]
        assert [r["custom_id"] for r in parsed] == list(iter_shard_ids(path, s))
        assert edge_ids(path, s) == (parsed[0]["custom_id"], parsed[-1]["custom_id"])  # what an intent names
        ids += [r["custom_id"] for r in parsed]
        body.seek(0)
        assert b"".join(body) == data
    assert ids == [f"r-{i}" for i in range(n)]
    assert [s.shard for s in shards] == list(range(1, len(shards) + 1))


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_shard_ids_scan_across_block_edges(tmp_path, monkeypatch, block):
    import batchpilot.executors.batch.shards as shards

    monkeypatch.setattr(shards, "ID_SCAN_BLOCK", block)
    path = write_requests(tmp_path / "r.jsonl", 60)
    with open(path, "a") as fh:
        fh.write('{"params":{},"custom_id":"late"}\n')
    found = [i for s in plan_shards(path, 25, 10_000) for i in iter_shard_ids(path, s)]
    assert found == [f"r-{i}" for i in range(60)] + ["late"]


def test_shard_body_is_seekable_for_a_content_length(tmp_path):
    path = write_requests(tmp_path / "r.jsonl", 5)
    body = ShardBody(path, plan_shards(path, 10, 10_000)[0])
    assert body.seek(0, 2) == len(body)
    body.seek(3)
    assert body.read(10) == (b'{"requests":[' + b"x" * 0)[3:13]


def test_limits_precedence_and_headroom(monkeypatch):
    assert limits() == (100_000, int(256 * 1024 * 1024 * 0.95))
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_REQUESTS", "7")
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_BYTES", "1000000")
    assert limits() == (7, 950_000)
    assert limits(max_requests=3) == (3, 950_000)
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_REQUESTS", "many")
    with pytest.raises(BatchpilotError, match="BATCHPILOT_MAX_BATCH_REQUESTS='many'"):
        limits()


def test_blank_line_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"custom_id":"a","params":{}}\n\n')
    with pytest.raises(BatchpilotError, match="line 2: blank line"):
        plan_shards(path, 10, 10_000)


# ------------------------------------------------------------------------------ ledger and classification


def run_with(tmp_path: Path, n: int) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    write_requests(run / "requests.jsonl", n)
    return run


def result_line(cid: str, kind: str, attempt: int, etype: str | None = None, message: str = "m") -> str:
    result: dict = {"type": kind}
    if kind == "errored":
        result["error"] = {"type": "error", "error": {"type": etype, "message": message}, "request_id": None}
    if kind == "succeeded":
        result["message"] = {"content": []}
    rec = {"custom_id": cid, "result": result}
    line = json.dumps(rec, separators=(",", ":"))[:-1]
    return line + f',"attempt":{attempt},"mode":"batch","at":"2026-01-01T00:00:00Z","batch_id":"b{attempt}"}}\n'


def test_classify_latest_outcome_wins(tmp_path):
    from batchpilot.results.selection import DEFAULT_SELECTION, classify, parse_only

    run = run_with(tmp_path, 8)
    lines = [result_line("r-0", "succeeded", 1), result_line("r-1", "errored", 1, "overloaded_error"),
             result_line("r-1", "succeeded", 2), result_line("r-2", "expired", 1),
             result_line("r-3", "errored", 1, "invalid_request_error"), result_line("r-4", "canceled", 1),
             result_line("r-5", "errored", 1, "api_error"), result_line("r-6", "errored", 1, "rate_limit_error")]
    (run / "results.jsonl").write_text("".join(lines) + '{"custom_id":"r-7","resu')  # a torn tail
    found = classify(run, DEFAULT_SELECTION)
    assert found.counts == {"ok": 2, "expired": 1, "invalid_request_error": 1, "canceled": 1, "api_error": 1,
                            "rate_limit_error": 1, "missing": 1}
    assert set(found.selected) == {"r-2", "r-5", "r-6", "r-7"}
    assert set(classify(run, parse_only("canceled")).selected) == {"r-4"}
    assert set(classify(run, parse_only("errored")).selected) == {"r-3", "r-5", "r-6"}
    with pytest.raises(BatchpilotError, match="not a result type"):
        parse_only("bogus")


def test_a_success_is_never_selected_again_whatever_failed_with_a_higher_attempt_number(tmp_path):
    """A direct retry numbers its tries (2..6) and a batch round its round (2): a connection failure of the
    direct retry (attempt 6) followed by the batch round's success (attempt 2) is ok, as merge says, and a
    further retry must not pay for the item again."""
    from batchpilot.results.selection import DEFAULT_SELECTION, classify

    run = run_with(tmp_path, 3)
    lines = [result_line("r-0", "errored", 1, "overloaded_error"), result_line("r-0", "errored", 6, "connection_error"),
             result_line("r-0", "succeeded", 2),
             result_line("r-1", "succeeded", 1), result_line("r-1", "errored", 3, "connection_error"),
             result_line("r-2", "errored", 6, "connection_error")]
    (run / "results.jsonl").write_text("".join(lines))
    found = classify(run, DEFAULT_SELECTION)
    assert found.counts == {"ok": 2, "connection_error": 1}
    assert set(found.selected) == {"r-2"}  # connection errors are retryable; successes are not re-bought


def test_only_the_api_s_account_phrases_stop_a_run():
    from batchpilot.api.failures import account_refusal, is_account_message

    credit = "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
    assert is_account_message(credit)
    assert is_account_message("You have reached your specified API usage limits.")
    for ordinary in ("This model requires a payment method on file", "billing address is incomplete",
                     "messages.0: field required"):
        assert not is_account_message(ordinary), ordinary
        assert account_refusal({"invalid_request_error": 1}, {"invalid_request_error": ordinary}, 5) is None


def test_account_failure_detection():
    from batchpilot.executors.batch.state import BatchState, RunState
    from batchpilot.executors.batch.state import round_refusal as account_failure

    def state(errors, messages, lines):
        s = RunState()
        b = BatchState("b", 1, 1, lines)
        b.recorded = {"lines": lines, "errors": errors, "messages": messages}
        s.batches["b"] = b
        return s

    assert account_failure(state({"billing_error": 1}, {"billing_error": "pay"}, 10), 1) == ("billing_error", "pay")
    credit = "Your credit balance is too low to access the Anthropic API."
    assert account_failure(state({"invalid_request_error": 3}, {"invalid_request_error": credit}, 9), 1)[1] == credit
    assert account_failure(state({"authentication_error": 4}, {"authentication_error": "bad key"}, 4), 1)
    assert account_failure(state({"authentication_error": 3}, {"authentication_error": "bad key"}, 4), 1) is None
    assert account_failure(state({"overloaded_error": 9}, {"overloaded_error": "Overloaded"}, 9), 1) is None


def test_ledger_marks_an_unanswered_intent_unknown(tmp_path):
    from batchpilot.executors.batch.state import load_state, record

    run = run_with(tmp_path, 3)
    (run / "journal.jsonl").write_text("")
    shards = [s.to_json() for s in plan_shards(run / "requests.jsonl", 2, 10_000)]
    record(run, "round_planned", round=1, source="requests.jsonl", requests=3, shards=shards)
    record(run, "submit_intent", round=1, shard=1, attempt=1)
    state = load_state(run)
    assert state.shard(1, 1).unknown and not state.shard(1, 2).unknown
    record(run, "create_refused", round=1, shard=1, status=429)
    assert not load_state(run).shard(1, 1).unknown
    record(run, "submit_intent", round=1, shard=1, attempt=2)
    record(run, "batch_created", round=1, shard=1, batch_id="b1", requests=2)
    state = load_state(run)
    assert [s.shard for s in state.pending()] == [2] and [b.id for b in state.open_batches()] == ["b1"]


def test_crash_hook_is_inert_without_the_variable(monkeypatch):
    from batchpilot.core import crash

    monkeypatch.delenv(crash.CRASH_ENV, raising=False)
    crash.point("after-create-before-journal")
    for _ in range(3):
        crash.journaled()


def test_emulator_state_survives_a_restart(tmp_path):
    import anthropic

    from batchpilot.emulator.http.server import Emulator

    from batchpilot.emulator.config import EmulatorConfig

    config = dict(data_dir=str(tmp_path / "emu"), persist=True, batch_speed=0.5)
    body = {"requests": [{"custom_id": f"c{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 5,
                                                           "messages": [{"role": "user", "content": "hi"}]}} for i in range(2)]}
    with Emulator(EmulatorConfig(**config)) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="k")
        first = client.messages.batches.create(requests=body["requests"])
        client.messages.batches.cancel(first.id)
        second = client.messages.batches.create(requests=body["requests"])
    with Emulator(EmulatorConfig(**config)) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="k")
        assert client.messages.batches.retrieve(first.id).cancel_initiated_at is not None
        assert client.messages.batches.retrieve(second.id).processing_status == "in_progress"
        third = client.messages.batches.create(requests=body["requests"])
        assert len({first.id, second.id, third.id}) == 3
        assert [b.id for b in client.messages.batches.list()] == [third.id, second.id, first.id]
