"""Token-bucket rate limits: a client that ignores them gets 429s with retry-after, and the headers' remaining
counts fall per request and refill at the configured rate."""

from __future__ import annotations

import time

import anthropic
import pytest
from emulator.emu_helpers import params, raw


def remaining(headers: dict, name: str) -> int:
    return int(headers[f"anthropic-ratelimit-{name}-remaining"])


def test_a_client_that_ignores_limits_gets_429_with_retry_after(make_emulator):
    emu = make_emulator(requests_per_minute=5)
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    seen = []
    for _ in range(5):
        response = client.messages.with_raw_response.create(**params("go"))
        seen.append(int(response.headers["anthropic-ratelimit-requests-remaining"]))
    assert seen == [4, 3, 2, 1, 0]
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**params("go"))
    error = caught.value
    assert error.status_code == 429 and error.body["error"]["type"] == "rate_limit_error"
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert emu.stats()["rate_limited"] == 1


def test_remaining_refills_at_the_configured_rate(make_emulator):
    per_minute = 60_000  # 1,000 input tokens per second
    emu = make_emulator(input_tokens_per_minute=per_minute)
    client = raw(emu)
    body = params("x" * 4000)  # ~1,000 input tokens per request
    for _ in range(20):
        status, headers, _ = client.call("POST", "/v1/messages", body)
        assert status == 200
    low = remaining(headers, "input-tokens")
    assert low < per_minute * 0.8
    t0 = time.monotonic()
    time.sleep(1.0)
    status, headers, message = client.json("POST", "/v1/messages", body)
    elapsed = time.monotonic() - t0
    refilled = remaining(headers, "input-tokens") - (low - message["usage"]["input_tokens"])
    expected = per_minute / 60 * elapsed
    assert abs(refilled - expected) <= 0.1 * expected, (refilled, expected)


def test_output_tokens_and_batch_endpoints_have_their_own_buckets(make_emulator):
    emu = make_emulator(output_tokens_per_minute=40, batch_requests_per_minute=2)
    client = raw(emu)
    statuses = [client.call("POST", "/v1/messages", params("long answer"))[0] for _ in range(6)]
    assert statuses[0] == 200 and 429 in statuses
    batch_statuses = [client.call("GET", "/v1/messages/batches")[0] for _ in range(3)]
    assert batch_statuses == [200, 200, 429]
    status, headers, body = client.json("GET", "/v1/messages/batches")
    assert status == 429 and body["error"]["type"] == "rate_limit_error" and int(headers["retry-after"]) >= 1
