"""Token-bucket rate limits: a client that ignores them gets 429s with retry-after, and the headers' remaining
counts fall per request and refill at the configured rate."""

from __future__ import annotations

import time

import anthropic
import pytest
from emulator.emu_helpers import params, raw

from batchpilot.emulator.state import rate_limits


def remaining(headers: dict, name: str) -> int:
    return int(headers[f"anthropic-ratelimit-{name}-remaining"])


class StoppedClock:
    """Stands in for the `time` module of the emulator's rate limits: monotonic time moves only by `advance`.

    The buckets meter the client's real pace on the real monotonic clock (the emulated clock that
    /_emulator/advance moves leaves them alone, by design), so a test drives that clock instead of sleeping.
    """

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def stopped_clock(monkeypatch: pytest.MonkeyPatch) -> StoppedClock:
    clock = StoppedClock()
    monkeypatch.setattr(rate_limits, "time", clock)
    return clock


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


def test_remaining_refills_at_the_configured_rate(stopped_clock, make_emulator):
    per_minute = 60_000  # 1,000 input tokens per second
    emu = make_emulator(input_tokens_per_minute=per_minute)  # its buckets start on the stopped clock
    client = raw(emu)
    body = params("x" * 4000)  # ~1,000 input tokens per request
    used = 0
    for _ in range(20):
        status, headers, message = client.json("POST", "/v1/messages", body)
        assert status == 200
        used += message["usage"]["input_tokens"]
    low = remaining(headers, "input-tokens")
    assert low == per_minute - used < per_minute * 0.8  # each request took its input tokens; no time, no refill
    stopped_clock.advance(1.5)
    status, headers, message = client.json("POST", "/v1/messages", body)
    assert status == 200
    refilled = remaining(headers, "input-tokens") - (low - message["usage"]["input_tokens"])
    assert refilled == per_minute / 60 * 1.5  # exactly 1.5 s of refill at 1,000 a second
    # The refill stops at the limit: after two idle minutes the bucket is full, then one request's worth short.
    stopped_clock.advance(120)
    status, headers, message = client.json("POST", "/v1/messages", body)
    assert status == 200
    assert remaining(headers, "input-tokens") == per_minute - message["usage"]["input_tokens"]


def test_output_tokens_and_batch_endpoints_have_their_own_buckets(make_emulator):
    emu = make_emulator(output_tokens_per_minute=40, batch_requests_per_minute=2)
    client = raw(emu)
    statuses = [client.call("POST", "/v1/messages", params("long answer"))[0] for _ in range(6)]
    assert statuses[0] == 200 and 429 in statuses
    batch_statuses = [client.call("GET", "/v1/messages/batches")[0] for _ in range(3)]
    assert batch_statuses == [200, 200, 429]
    status, headers, body = client.json("GET", "/v1/messages/batches")
    assert status == 429 and body["error"]["type"] == "rate_limit_error" and int(headers["retry-after"]) >= 1


def test_a_limit_changed_mid_run_binds_at_once(make_emulator):
    # POST /_emulator/limits lowers the request limit as an account's limit can change mid-run: the level is
    # capped at the new limit and the headers report it on the next answer.
    from emulator.emu_helpers import admin

    emu = make_emulator(requests_per_minute=50)
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    assert admin(emu, "limits", {"requests_per_minute": 2})["requests_per_minute"] == 2
    seen = [client.messages.with_raw_response.create(**params("go")).headers for _ in range(2)]
    assert [h["anthropic-ratelimit-requests-limit"] for h in seen] == ["2", "2"]
    assert [remaining(h, "requests") for h in seen] == [1, 0]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**params("go"))
    status, _, data = raw(emu).json("POST", "/_emulator/limits", {"requests_per_minute": 0})
    assert status == 400 and "requests_per_minute" in data["error"]["message"]
