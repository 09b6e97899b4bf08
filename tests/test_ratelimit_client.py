"""The direct executor's client-side buckets (batchpilot.executors.direct.limiter): reservation, refund, header learning,
429 pauses. Pure: a fake clock, no network."""

from __future__ import annotations

import pytest

from batchpilot.api.headers import parse_retry_after
from batchpilot.executors.direct.limiter import Limiter, header_limits


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def headers(**values: int) -> dict:
    """headers(requests=(limit, remaining), ...) -> anthropic-ratelimit-* headers, mixed case like HTTP."""
    out = {}
    for dim, (limit, remaining) in values.items():
        name = dim.replace("_", "-")
        out[f"Anthropic-RateLimit-{name}-Limit"] = str(limit)
        out[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
    return out


def test_a_bucket_starts_full_then_paces_at_limit_per_minute():
    clock = Clock()
    lim = Limiter(rpm=60, clock=clock)
    for _ in range(60):
        reservation, wait = lim.try_reserve(10, 10)
        assert reservation is not None and wait == 0
    reservation, wait = lim.try_reserve(10, 10)
    assert reservation is None and wait == pytest.approx(1.0)
    clock.advance(0.5)
    assert lim.wait_time(10, 10) == pytest.approx(0.5)
    clock.advance(0.5)
    assert lim.try_reserve(10, 10)[0] is not None


def test_output_is_reserved_at_max_tokens_and_the_unused_part_refunded():
    clock = Clock()
    lim = Limiter(otpm=1000, clock=clock)
    first, _ = lim.try_reserve(5, 600)
    assert first is not None
    assert lim.try_reserve(5, 600) == (None, pytest.approx((600 - 400) / (1000 / 60)))
    lim.settle(first, 5, 100)  # the answer used 100 of its 600
    assert lim.buckets["output_tokens"].level == pytest.approx(900)
    assert lim.try_reserve(5, 600)[0] is not None


def test_settling_above_the_estimate_takes_the_difference():
    clock = Clock()
    lim = Limiter(itpm=600, clock=clock)
    reservation, _ = lim.try_reserve(500, 1)
    lim.settle(reservation, 700, 1)  # the server counted more input than the estimate
    assert lim.buckets["input_tokens"].level == pytest.approx(-100)
    assert lim.wait_time(10, 1) == pytest.approx(110 / 10)


def test_a_request_larger_than_the_whole_bucket_waits_for_a_full_bucket_not_forever():
    clock = Clock()
    lim = Limiter(itpm=1200, clock=clock)
    reservation, _ = lim.try_reserve(5000, 1)
    assert reservation.input_tokens == 1200
    assert lim.wait_time(5000, 1) == pytest.approx(60.0)


def test_unknown_limits_never_wait_until_headers_teach_them():
    clock = Clock()
    lim = Limiter(clock=clock)
    assert not lim.calibrated
    for _ in range(1000):
        assert lim.try_reserve(10**6, 10**6)[1] == 0
    lim.observe(headers(requests=(120, 3), input_tokens=(40_000, 39_000), output_tokens=(8_000, 8_000)))
    assert lim.calibrated
    assert lim.describe() == {"requests": {"per_minute": 120, "source": "headers"},
                              "input_tokens": {"per_minute": 40_000, "source": "headers"},
                              "output_tokens": {"per_minute": 8_000, "source": "headers"}}
    for _ in range(3):
        assert lim.try_reserve(10, 10)[0] is not None
    assert lim.try_reserve(10, 10) == (None, pytest.approx(0.5))  # 120/min = 2/s


def test_a_response_without_rate_limit_headers_still_calibrates():
    lim = Limiter(clock=Clock())
    lim.observe({"request-id": "req_1"})
    assert lim.calibrated and lim.describe()["requests"] == {"per_minute": None, "source": "none"}


@pytest.mark.parametrize("flag, header, expected, source", [
    (100, 1000, 100, "flag"),  # the user's lower ceiling wins
    (5000, 1000, 1000, "headers"),  # the server knows the account's real limit
])
def test_the_lower_of_flag_and_header_is_in_force(flag, header, expected, source):
    lim = Limiter(rpm=flag, clock=Clock())
    lim.observe(headers(requests=(header, header)))
    assert lim.describe()["requests"] == {"per_minute": expected, "source": source}


def test_the_first_header_sets_the_level_even_under_a_flag():
    clock = Clock()
    lim = Limiter(rpm=600, clock=clock)  # we believe the bucket is full...
    reservation, _ = lim.try_reserve(1, 1)
    lim.settle(reservation, 1, 1)
    lim.observe(headers(requests=(600, 0)))  # ...but a run just before ours emptied it
    assert lim.buckets["requests"].level == pytest.approx(0)
    assert lim.try_reserve(1, 1) == (None, pytest.approx(0.1))


def test_later_headers_lower_a_level_only_beyond_the_slack_and_never_raise_it():
    clock = Clock()
    lim = Limiter(itpm=100_000, clock=clock)
    lim.observe(headers(input_tokens=(100_000, 50_000)))
    assert lim.buckets["input_tokens"].level == pytest.approx(50_000)
    lim.observe(headers(input_tokens=(100_000, 49_000)))  # within 2%: rounding or a stale snapshot
    assert lim.buckets["input_tokens"].level == pytest.approx(50_000)
    lim.observe(headers(input_tokens=(100_000, 20_000)))  # someone else is using the key
    assert lim.buckets["input_tokens"].level == pytest.approx(20_000)
    lim.observe(headers(input_tokens=(100_000, 90_000)))  # higher: our reservations may still be in flight
    assert lim.buckets["input_tokens"].level == pytest.approx(20_000)


def test_a_changed_limit_is_followed():
    clock = Clock()
    lim = Limiter(clock=clock)
    lim.observe(headers(requests=(1000, 1000)))
    lim.observe(headers(requests=(50, 50)))
    assert lim.buckets["requests"].limit == 50 and lim.buckets["requests"].level <= 50


def test_a_429_returns_the_reservation_and_pauses_only_the_bucket_that_ran_out():
    clock = Clock()
    lim = Limiter(rpm=600, itpm=6_000, otpm=60_000, clock=clock)
    lim.observe(headers(requests=(600, 600), input_tokens=(6_000, 6_000), output_tokens=(60_000, 60_000)))
    reservation, _ = lim.try_reserve(500, 100)
    before = {d: b.level for d, b in lim.buckets.items()}
    name = lim.rate_limited(headers(requests=(600, 590), input_tokens=(6_000, 200), output_tokens=(60_000, 59_000)),
                            reservation, retry_after=2.0)
    assert name == "input_tokens"
    assert lim.buckets["input_tokens"].paused_until == pytest.approx(clock.t + 2.0)
    assert lim.buckets["requests"].paused_until == 0 and lim.buckets["output_tokens"].paused_until == 0
    # Given back, then synced to the server's count with no slack: a 429 means our copy ran ahead.
    assert lim.buckets["requests"].level == pytest.approx(590)
    assert lim.buckets["input_tokens"].level == pytest.approx(200)  # synced down to the server's count
    assert lim.wait_time(10, 10) == pytest.approx(2.0)
    clock.advance(2.0)
    assert lim.wait_time(10, 10) == 0


def test_a_429_without_headers_blames_the_emptiest_bucket_by_our_own_count():
    clock = Clock()
    lim = Limiter(rpm=600, otpm=1_000, clock=clock)
    held, _ = lim.try_reserve(1, 900)  # in flight: the output bucket is nearly empty
    reservation, _ = lim.try_reserve(1, 50)
    name = lim.rate_limited({}, reservation, retry_after=None)
    assert name == "output_tokens"
    assert lim.buckets["output_tokens"].paused_until == pytest.approx(clock.t + 1.0)  # no retry-after: 1 s
    assert lim.buckets["requests"].paused_until == 0


def test_a_429_with_no_limits_known_pauses_requests():
    clock = Clock()
    lim = Limiter(clock=clock)
    reservation, _ = lim.try_reserve(1, 1)
    assert lim.rate_limited({"retry-after": "4"}, reservation, retry_after=4.0) == "requests"
    assert lim.buckets["requests"].paused_until == pytest.approx(clock.t + 4.0)
    assert lim.wait_time(1, 1) == pytest.approx(4.0)  # an unknown limit still honours retry-after


@pytest.mark.parametrize("hdrs, expected", [
    ({"retry-after": "3"}, 3.0),
    ({"Retry-After": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
    ({"retry-after": "-1"}, None),
    ({}, None),
    (None, None),
])
def test_retry_after_parsing(hdrs, expected):
    assert parse_retry_after(hdrs) == (pytest.approx(expected) if expected is not None else None)


def test_header_limits_ignores_unrelated_and_malformed_values():
    parsed = header_limits({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "x",
                            "anthropic-ratelimit-tokens-limit": "9", "content-type": "application/json"})
    assert parsed == {"requests": (50, None)}
