"""Fault injection: deterministic for a seed, about the configured share of items, and shaped like the real
failures (status codes, error types, stop reasons, result lines)."""

from __future__ import annotations

import json
import time

import anthropic
import pytest
from emulator.emu_helpers import admin, params, raw

from batchpilot.emulator.behaviour.faults import FaultRule


def run_batch(emu, n: int, prefix: str = "item") -> list[dict]:
    requests = [{"custom_id": f"{prefix}-{i}", "params": params(f"text {i}")} for i in range(n)]
    _, _, batch = raw(emu).json("POST", "/v1/messages/batches", {"requests": requests})
    admin(emu, f"batches/{batch['id']}/finish")
    _, _, body = raw(emu).call("GET", f"/v1/messages/batches/{batch['id']}/results")
    return [json.loads(line) for line in body.splitlines()]


def errored_ids(lines: list[dict]) -> set[str]:
    return {l["custom_id"] for l in lines if l["result"]["type"] == "errored"}


def test_a_3_percent_rate_hits_about_3_percent_and_is_reproducible(make_emulator):
    rule = lambda: [FaultRule(kind="overloaded", rate=0.03)]  # noqa: E731
    first = run_batch(make_emulator(seed=7, faults=rule()), 2000)
    again = run_batch(make_emulator(seed=7, faults=rule()), 2000)
    other = run_batch(make_emulator(seed=8, faults=rule()), 2000)
    hit = errored_ids(first)
    assert 0.02 * 2000 <= len(hit) <= 0.04 * 2000
    assert hit == errored_ids(again) and hit != errored_ids(other)
    line = next(l for l in first if l["result"]["type"] == "errored")
    assert line["result"]["error"]["error"]["type"] == "overloaded_error"


def test_pattern_rules_pick_custom_ids(make_emulator):
    emu = make_emulator(faults=[FaultRule(kind="api_error", match="^bad-"), FaultRule(kind="expired", match="-3$")])
    lines = {l["custom_id"]: l["result"] for l in run_batch(emu, 5, "bad") + run_batch(emu, 5, "good")}
    assert {k for k, r in lines.items() if r["type"] == "errored"} == {f"bad-{i}" for i in range(5)}
    assert lines["good-3"]["type"] == "expired" and lines["good-1"]["type"] == "succeeded"
    assert lines["bad-0"]["error"]["error"]["type"] == "api_error"


@pytest.mark.parametrize("kind, error_class, status", [
    ("overloaded", anthropic.InternalServerError, 529),
    ("api_error", anthropic.InternalServerError, 500),
    ("rate_limit", anthropic.RateLimitError, 429),
    ("errored", anthropic.BadRequestError, 400),
    ("billing", anthropic.APIStatusError, 402),
    ("low_credit", anthropic.BadRequestError, 400),
])
def test_messages_http_faults(make_emulator, kind, error_class, status):
    emu = make_emulator(faults=[FaultRule(kind=kind, times=1)])
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    with pytest.raises(error_class) as caught:
        client.messages.create(**params("x"))
    assert caught.value.status_code == status
    assert client.messages.create(**params("x")).stop_reason == "end_turn"  # times=1: the retry gets through


def test_sdk_retries_ride_out_transient_faults(make_emulator, tmp_path):
    log = tmp_path / "log.jsonl"
    emu = make_emulator(log_path=str(log), faults=[FaultRule(kind="overloaded", times=2)])
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=2)
    client.messages.create(**params("retry me"))
    statuses = [json.loads(l)["status"] for l in log.read_text().splitlines()]
    assert statuses == [529, 529, 200]


@pytest.mark.parametrize("kind, stop_reason", [("invalid_json", "end_turn"), ("truncate", "max_tokens"), ("refusal", "refusal")])
def test_answer_faults(make_emulator, kind, stop_reason):
    emu = make_emulator(faults=[FaultRule(kind=kind)])
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", _strict_response_validation=True)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    message = client.messages.create(**params("json", output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert message.stop_reason == stop_reason
    with pytest.raises(ValueError):
        json.loads(message.content[0].text)
    if kind == "refusal":
        assert message.stop_details.type == "refusal"


def test_slow_fault_delays_the_answer(make_emulator):
    emu = make_emulator(slow_seconds=0.3, faults=[FaultRule(kind="slow", times=1)])
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0, timeout=0.1)
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(**params("slow"))
    time.sleep(0.3)
    assert client.messages.create(**params("slow")).content


def test_fault_specs_parse_and_reject_nonsense():
    assert FaultRule.parse("overloaded=0.03").rate == 0.03
    rule = FaultRule.parse("kind=errored,match=^bad-,times=2")
    assert (rule.kind, rule.match, rule.times) == ("errored", "^bad-", 2)
    for spec in ("bogus", "overloaded=2", "kind=errored,match=(", "kind=slow,rate=x", "kind=slow,color=red"):
        with pytest.raises(ValueError):
            FaultRule.parse(spec)


@pytest.mark.parametrize("kind, status, error_type", [("billing", 402, "billing_error"),
                                                      ("low_credit", 400, "invalid_request_error")])
def test_credit_faults_carry_the_apis_low_credit_message(make_emulator, kind, status, error_type):
    from batchpilot.emulator.behaviour.faults import LOW_CREDIT_MESSAGE

    emu = make_emulator(faults=[FaultRule(kind=kind, match="-1$")])
    lines = {l["custom_id"]: l["result"] for l in run_batch(emu, 3)}
    assert lines["item-0"]["type"] == "succeeded"
    assert lines["item-1"]["error"]["error"] == {"type": error_type, "message": LOW_CREDIT_MESSAGE}
    code, _, body = raw(emu).call("POST", "/v1/messages", params("text item-1"))  # match: the user text
    assert code == status and json.loads(body)["error"] == {"type": error_type, "message": LOW_CREDIT_MESSAGE}
