"""The direct executor against the emulator, checked against the emulator's request log: every item done at a
binding limit with few 429s, limits taken from flags or learned from headers, receipts that match what the
server saw, faults survived without duplicate successes. How much of the limit a run uses is a figure, not a
test: bench/bench_direct.py measures utilisation of the request and input-token limits (bench/run_all.py)."""

from __future__ import annotations

import json
from collections import Counter

import anthropic
import pytest
from test_direct_support import Tap, drain, log_time, make_run, read_log, utilisation

from batchpilot.api.failures import Failure, classify
from batchpilot.executors.direct.budget import worst_case_cost
from batchpilot.executors.direct.executor import Limits, run_direct
from batchpilot.executors.direct.jobs import sendable
from batchpilot.emulator.behaviour.faults import FaultRule
from batchpilot.core.models import Prices

DRAIN_BODY = {"model": "claude-haiku-4-5", "max_tokens": 4, "messages": [{"role": "user", "content": "drain"}]}


def client_for(emu) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="test-key", max_retries=0)


def results(run) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def check_accounted(run, n: int) -> Counter:
    """Every item has exactly one final record; no item succeeded twice. Returns counts by result type."""
    records = results(run)
    ids = Counter(r["custom_id"] for r in records)
    assert len(ids) == n and set(ids.values()) == {1}, ids.most_common(3)
    for r in records:
        assert r["mode"] == "direct" and r["attempt"] >= 1 and r["at"].endswith("Z")
        if r["result"]["type"] == "succeeded":
            assert r["result"]["message"]["type"] == "message" and r["result"]["message"]["usage"]["output_tokens"] > 0
        else:
            error = r["result"]["error"]
            assert error["type"] == "error" and error["error"]["type"] and error["error"]["message"]
    return Counter(r["result"]["type"] for r in records)


def test_requests_per_minute_binding_runs_at_the_limit_with_flags(bp, emulator, tmp_path):
    # 150 tiny items against 600 RPM (10/s): the request bucket binds. The bucket starts full (a minute's burst),
    # so we empty it first: the run then starts at zero and everything it gets comes from the refill.
    rpm, n = 600, 150
    log = tmp_path / "emu.log"
    emu = emulator(requests_per_minute=rpm, log_path=str(log))
    tap = Tap(emu)
    run = make_run(bp, tmp_path, n)
    initial = int(drain(emu.base_url, DRAIN_BODY)["anthropic-ratelimit-requests-remaining"])
    drained = read_log(log)
    receipt = run_direct(run, client_for(emu), limits=Limits(rpm=rpm))
    u = utilisation(read_log(log)[len(drained):], initial, rpm, lambda e: 1, since=log_time(drained[-1]))
    assert receipt["counts"]["succeeded"] == n and u["used"] == n
    print("utilisation", json.dumps(u))
    assert receipt["limits"]["requests"] == {"per_minute": rpm, "source": "flag"}
    assert u["429"] <= 0.02 * u["requests"], u
    assert receipt["rate_limited_429"] == u["429"] and receipt["requests_sent"] == u["requests"]
    assert check_accounted(run, n) == {"succeeded": n}
    assert max(c for cid, c in tap.successes().items() if cid) == 1


def test_input_tokens_binding_learned_from_headers(bp, emulator, tmp_path):
    # ~180-token items against 108,000 input tokens per minute (1,800/s); no flags: the executor learns the
    # limits from the first response's headers. One huge request empties the input bucket first.
    itpm, n = 108_000, 150
    log = tmp_path / "emu.log"
    emu = emulator(input_tokens_per_minute=itpm, log_path=str(log))
    run = make_run(bp, tmp_path, n, pad=300)
    huge = dict(DRAIN_BODY, messages=[{"role": "user", "content": "x" * (itpm * 4 + 100)}])
    initial = int(drain(emu.base_url, huge, until_status=200)["anthropic-ratelimit-input-tokens-remaining"])
    drained = read_log(log)
    receipt = run_direct(run, client_for(emu))
    u = utilisation(read_log(log)[len(drained):], initial, itpm,
                    lambda e: e["usage"]["input_tokens"] + e["usage"]["cache_creation_input_tokens"],
                    since=log_time(drained[-1]))
    assert receipt["limits"]["input_tokens"] == {"per_minute": itpm, "source": "headers"}
    assert receipt["limits"]["requests"]["source"] == "headers"
    assert u["used"] > initial + itpm / 60 * 10, u  # over 10 s of refill: the limit, not the item count, set the pace
    print("utilisation", json.dumps(u))
    assert u["429"] <= 0.02 * u["requests"], u
    # The receipt's token counts are the server's.
    assert receipt["tokens"]["input"] + receipt["tokens"]["cache_write"] == u["used"], (receipt["tokens"], u)
    assert check_accounted(run, n) == {"succeeded": n}


def test_injected_overloaded_and_server_errors_end_in_one_final_record_each(bp, emulator, tmp_path):
    n = 200
    log = tmp_path / "emu.log"
    emu = emulator(log_path=str(log), faults=[FaultRule("overloaded", rate=0.05), FaultRule("api_error", rate=0.05)])
    tap = Tap(emu)
    run = make_run(bp, tmp_path, n)
    receipt = run_direct(run, client_for(emu), max_attempts=2)
    kinds = check_accounted(run, n)
    statuses = Counter(e["status"] for e in read_log(log))
    assert statuses[529] + statuses[500] >= 10  # the faults fired
    assert receipt["requests_sent"] == sum(statuses.values()) == sum(tap.sent_ids().values())
    assert receipt["retries"] > 0
    successes = tap.successes()
    assert sum(successes.values()) == kinds["succeeded"] == receipt["counts"]["succeeded"]
    assert max(successes.values()) == 1  # no duplicate success on the server side either
    # Each errored item was tried exactly max_attempts times and keeps its last error.
    errored = {r["custom_id"]: r for r in results(run) if r["result"]["type"] == "errored"}
    for cid, record in errored.items():
        assert record["result"]["error"]["error"]["type"] in ("overloaded_error", "api_error")
        assert record["attempt"] == 2 == tap.sent_ids()[cid]
    assert sum(receipt["counts"]["errored"].values()) == len(errored)


def test_429s_wait_for_retry_after_go_first_and_do_not_use_up_attempts(bp, emulator, tmp_path):
    log = tmp_path / "emu.log"
    emu = emulator(log_path=str(log), faults=[FaultRule("rate_limit", rate=0.15)])
    tap = Tap(emu)
    run = make_run(bp, tmp_path, 20)
    # Two slots: when a 429 comes back, at most the other slot's request is already on its way.
    receipt = run_direct(run, client_for(emu), max_attempts=1, concurrency=2)
    assert check_accounted(run, 20) == {"succeeded": 20}
    entries = [e for e in read_log(log) if e["status"] == 429]
    assert receipt["rate_limited_429"] == len(entries) > 0 and receipt["retries"] == 0
    assert max(tap.successes().values()) == 1
    # After each 429 nothing new is sent until its retry-after (1 s) has passed: the server sees at most the
    # one request that was already in flight (the server's log times when it answered, not when we sent).
    times = [(log_time(e), e["status"]) for e in read_log(log)]
    for t429, status in times:
        if status == 429:
            during = [t for t, _ in times if t429 + 0.05 < t < t429 + 0.95]
            assert len(during) <= 1, f"sent during a retry-after pause: {len(during)} requests"


def test_permanent_errors_are_recorded_once_and_not_retried(bp, emulator, tmp_path):
    scenario = [{"when": {"last_user_contains": "item-0003"},
                 "reply": {"error": {"status": 400, "type": "invalid_request_error", "message": "bad item"}}}]
    from batchpilot.emulator.behaviour.scenario import Step

    emu = emulator(scenario=[Step(**s) for s in scenario])
    tap = Tap(emu)
    run = make_run(bp, tmp_path, 6)
    receipt = run_direct(run, client_for(emu))
    assert receipt["counts"]["succeeded"] == 5 and receipt["counts"]["errored"] == {"invalid_request_error": 1}
    assert tap.sent_ids()["item-0003"] == 1
    bad = [r for r in results(run) if r["custom_id"] == "item-0003"][0]
    assert bad["result"]["error"]["error"] == {"type": "invalid_request_error", "message": "bad item"}
    assert bad["result"]["error"]["request_id"].startswith("req_")
    # A rerun sends only the item that did not succeed, and numbers its attempt after the first.
    again = run_direct(run, client_for(emu))
    assert again["counts"]["skipped_already_done"] == 5 and again["requests_sent"] == 1
    assert [r["attempt"] for r in results(run) if r["custom_id"] == "item-0003"] == [1, 2]


def test_a_shared_key_drained_by_someone_else_is_noticed_from_the_headers(bp, emulator, tmp_path):
    # The flag says 600 RPM and we believe the bucket is full, but another client has just used it all up.
    # The first response's remaining must win over our belief, or we would storm into 429s.
    emu = emulator(requests_per_minute=600)
    run = make_run(bp, tmp_path, 30)
    drained = drain(emu.base_url, DRAIN_BODY)
    # Nothing left: every one of the 30 requests must wait for the refill (10/s, ~3 s), not go out in a burst.
    assert drained["anthropic-ratelimit-requests-remaining"] == "0"
    receipt = run_direct(run, client_for(emu), limits=Limits(rpm=600))
    assert receipt["counts"]["succeeded"] == 30
    assert receipt["rate_limited_429"] <= 1


def test_max_cost_stops_before_the_budget_is_exceeded(bp, emulator, tmp_path):
    emu = emulator()
    run = make_run(bp, tmp_path, 40, max_tokens=100)
    manifest = json.loads((run / "run.json").read_text())
    prices = Prices(manifest["prices"]["input_per_mtok"], manifest["prices"]["output_per_mtok"])
    params = json.loads((run / "requests.jsonl").read_text().splitlines()[0])["params"]
    from batchpilot.core.tokens import estimate_input_tokens

    worst = worst_case_cost(params, estimate_input_tokens(params), prices)
    budget = worst * 10.5
    receipt = run_direct(run, client_for(emu), max_cost=budget)
    assert receipt["stopped"] == "max_cost"
    assert receipt["cost_usd"] <= budget
    assert 10 <= receipt["counts"]["succeeded"] < 40 and receipt["counts"]["not_run"] == 40 - receipt["counts"]["succeeded"]


def test_worst_case_cost_counts_a_one_hour_cache_write_at_twice_the_input_price():
    prices = Prices(1.0, 5.0)
    # a model of the older tokenizer, so 4,000 characters are 1,000 tokens (the newer one counts 1.3x)
    params = {"model": "claude-haiku-4-5", "max_tokens": 1000,
              "system": [{"type": "text", "text": "s" * 4000, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
              "messages": [{"role": "user", "content": "u" * 400}]}
    from batchpilot.core.tokens import estimate_input_tokens

    total = estimate_input_tokens(params)
    prefix = 1000
    expected = ((total - prefix) * 1.0 + prefix * 2.0 + 1000 * 5.0) / 1e6
    assert worst_case_cost(params, total, prices) == pytest.approx(expected)
    plain = dict(params, system="s" * 4000)
    assert worst_case_cost(plain, total, prices) == pytest.approx((total * 1.0 + 5000) / 1e6)


def test_sendable_keeps_the_body_whole_except_client_only_keys():
    params = {"model": "m", "max_tokens": 5, "messages": [], "system": "x", "stream": True, "_note": 1,
              "output_config": {"format": {"type": "json_schema", "schema": {}}}}
    required, extra = sendable(params)
    assert required == {"model": "m", "max_tokens": 5, "messages": []}
    assert extra == {"system": "x", "output_config": {"format": {"type": "json_schema", "schema": {}}}}


@pytest.mark.parametrize("status, type_, message, headers, kind", [
    (529, "overloaded_error", "Overloaded", {}, "transient"),
    (500, "api_error", "boom", {}, "transient"),
    (503, None, "", {}, "transient"),
    (408, None, "", {}, "transient"),
    (429, "rate_limit_error", "slow down", {"retry-after": "2"}, "rate_limited"),
    (429, "rate_limit_error", "spend cap", {"x-should-retry": "false"}, "account"),
    (400, "invalid_request_error", "messages: field required", {}, "permanent"),
    (400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API.", {}, "account"),
    (401, "authentication_error", "invalid x-api-key", {}, "account"),
    (402, "billing_error", "payment required", {}, "account"),
    (403, "permission_error", "no access to model", {}, "account"),
    (404, "not_found_error", "model: nope", {}, "permanent"),
    (413, "request_too_large", "too big", {}, "permanent"),
    (529, "overloaded_error", "Overloaded", {"x-should-retry": "false"}, "permanent"),
])
def test_classify(status, type_, message, headers, kind):
    failure = classify(status_error(status, type_, message, headers))
    assert isinstance(failure, Failure) and failure.kind == kind
    assert failure.error["type"] == "error" and failure.error["error"]["type"]
    if type_:
        assert failure.error["error"] == {"type": type_, "message": message}
        assert failure.error["request_id"] == "req_test"
    if "retry-after" in headers:
        assert failure.retry_after == 2.0


def test_classify_connection_errors_and_timeouts_as_transient():
    request = _request()
    timeout = classify(anthropic.APITimeoutError(request=request))
    assert (timeout.kind, timeout.type) == ("transient", "timeout_error")
    conn = classify(anthropic.APIConnectionError(request=request))
    assert (conn.kind, conn.type) == ("transient", "connection_error")


def _httpx():
    """The HTTP library this SDK generation is built on (2.x: httpx2, 1.x: httpx)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx
    return httpx


def _request():
    return _httpx().Request("POST", "http://127.0.0.1:9/v1/messages")


def status_error(status: int, type_: str | None, message: str, headers: dict) -> Exception:
    """The exception the SDK raises for this answer (built the way the SDK builds it)."""
    httpx = _httpx()
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_test"} if type_ else None
    response = httpx.Response(status, headers=headers, json=body, request=_request())
    client = anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:9")
    return client._make_status_error_from_response(response)


def test_a_long_answer_is_waited_for_not_cut():
    from batchpilot.executors.direct.executor import request_timeout

    # At least the 600 s floor; for a big max_tokens, the SDK's model of a long request (an hour per 128K).
    assert request_timeout(1_000) == 600.0
    assert request_timeout(64_000) == 1800.0 and request_timeout(128_000) == 3600.0


def test_an_answer_lost_on_the_way_back_counts_against_max_cost_before_it_is_sent_again(bp, emulator, tmp_path):
    # The emulator makes and bills the answer, then closes the connection without a response: the client sees
    # a dropped connection. The request may have been billed, so its worst case is spent before any re-send.
    import math

    from batchpilot.core.tokens import estimate_input_tokens
    from batchpilot.executors.direct.budget import INITIAL_COST_RATIO, billed_so_far

    log = tmp_path / "emu.log"
    emu = emulator(faults=[FaultRule.parse("kind=drop_answer,times=1")], log_path=str(log))
    run = make_run(bp, tmp_path, 1, max_tokens=100)
    manifest = json.loads((run / "run.json").read_text())
    prices = Prices(manifest["prices"]["input_per_mtok"], manifest["prices"]["output_per_mtok"])
    params = json.loads((run / "requests.jsonl").read_text().splitlines()[0])["params"]
    worst = worst_case_cost(params, math.ceil(estimate_input_tokens(params) * INITIAL_COST_RATIO), prices)
    # Room for one send's worst case and a half: the lost answer's worst case leaves no room to send it again.
    receipt = run_direct(run, client_for(emu), max_cost=worst * 1.5)
    sent = [e for e in read_log(log) if e["path"] == "/v1/messages"]
    assert [e["fault"] for e in sent] == ["drop_answer"], sent
    assert receipt["stopped"] == "max_cost" and receipt["run_spent_usd"] >= worst
    assert billed_so_far(run, prices)[1] == pytest.approx(worst, rel=1e-6)  # the next invocation counts it too
    # With room for it, the item is sent again and answered: one success, the lost send still counted.
    receipt = run_direct(run, client_for(emu), max_cost=worst * 3)
    assert receipt["counts"]["succeeded"] == 1 and receipt["run_spent_usd"] >= worst + receipt["cost_usd"]
    assert len([e for e in read_log(log) if e["path"] == "/v1/messages"]) == 2


def test_a_long_answer_is_streamed_and_a_short_one_is_not(bp, emulator, tmp_path):
    # 32,000 max_tokens may take 15 minutes by the SDK's own model: sent unstreamed, an idle connection can be
    # cut and the paid answer lost. It streams; the result record is the same Message a short call records.
    log = tmp_path / "emu.log"
    emu = emulator(log_path=str(log))
    long_run = make_run(bp, tmp_path, 2, max_tokens=32_000, name="long")
    short_run = make_run(bp, tmp_path, 2, max_tokens=100, name="short")
    for run in (long_run, short_run):
        assert run_direct(run, client_for(emu))["counts"]["succeeded"] == 2
    sent = [e for e in read_log(log) if e["path"] == "/v1/messages"]
    assert [bool(e.get("stream")) for e in sent] == [True, True, False, False]
    long_msgs = [r["result"]["message"] for r in results(long_run)]
    short_msgs = [r["result"]["message"] for r in results(short_run)]
    for message in long_msgs + short_msgs:
        assert message["type"] == "message" and message["usage"]["output_tokens"] > 0 and message["content"][0]["text"]
    assert {m["stop_reason"] for m in long_msgs} == {m["stop_reason"] for m in short_msgs}
