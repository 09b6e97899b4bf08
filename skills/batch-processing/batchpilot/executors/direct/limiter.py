"""Client-side rate limiting for the direct executor: three token buckets and what the API's headers say.

The Messages API limits an account by requests, input tokens and output tokens per minute, each a token
bucket that refills continuously (there is no minute boundary) and starts full. `Limiter` keeps a copy of
those buckets on the client, so the executor sends a request only when the server will accept it:

* before sending, `try_reserve` takes one request, the request's estimated input tokens and its
  `max_tokens` of output (the API also counts output against `max_tokens` until the answer is known);
* after the answer, `settle` gives back what `usage` says was not used (cache reads do not count toward
  the input limit), or takes the excess when the estimate was low;
* `observe` reads the `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining}` headers
  of every response: the limits are learned from them when no flag gave one (a flag is a ceiling the user
  chose, so the lower of flag and header wins), and a bucket is lowered to the server's `remaining` when the
  server holds clearly less than we think (another client on the same key, or a run just before ours). The
  first response's `remaining` sets the level outright. We never raise a level from a header: requests we
  have reserved may not have reached the server yet;
* a 429 gives the whole reservation back (the server took nothing), sets every bucket it reports to the
  server's `remaining` (no slack: the server has just said we ran ahead), and pauses only the bucket that
  ran out, for the `retry-after` the server asked.

Pure: no I/O, time passed in (tests use a fake clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from batchpilot.api.headers import lower_headers

DIMENSIONS = ("requests", "input_tokens", "output_tokens")
HEADER_NAMES = {"requests": "requests", "input_tokens": "input-tokens", "output_tokens": "output-tokens"}
HEADER_PREFIX = "anthropic-ratelimit-"
# The server's token `remaining` must be this far below our level before we believe it over our own count:
# the real API rounds token counts to thousands. Request counts are exact: one request of slack.
SYNC_SLACK_FRACTION = 0.02
DEFAULT_RETRY_AFTER = 1.0  # seconds, for a 429 without retry-after


@dataclass
class Limits:
    """Per-minute limits given by the user (`--rpm`, `--itpm`, `--otpm`); None: learn it from the API's
    rate-limit headers."""

    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None


@dataclass
class Reservation:
    """What one request took from each bucket (amounts above a limit are capped at the limit)."""

    requests: float
    input_tokens: float
    output_tokens: float

    def get(self, dim: str) -> float:
        return getattr(self, dim)


class Bucket:
    """One per-minute limit. `limit` None means not known (yet): such a bucket never makes anyone wait."""

    def __init__(self, name: str, limit: int | None, now: float):
        self.name = name
        self.flag = limit  # the user's ceiling, if any
        self.limit: float | None = float(limit) if limit else None
        self.level = self.limit or 0.0
        self.stamp = now
        self.paused_until = 0.0
        self.source = "flag" if limit else "none"
        self.synced = False  # set by the first response header that reports this bucket's remaining

    @property
    def rate(self) -> float:
        """Units per second."""
        return (self.limit or 0.0) / 60.0

    def refill(self, now: float) -> None:
        if self.limit is not None and now > self.stamp:
            self.level = min(self.limit, self.level + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def need(self, amount: float) -> float:
        """What `amount` takes from this bucket: a request larger than the whole bucket waits for a full one."""
        return amount if self.limit is None else min(amount, self.limit)

    def wait(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be taken (0: now)."""
        if now < self.paused_until:
            return self.paused_until - now
        if self.limit is None:
            return 0.0
        self.refill(now)
        short = self.need(amount) - self.level
        return 0.0 if short <= 1e-9 else short / self.rate

    def take(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def give(self, amount: float, now: float) -> None:
        self.refill(now)
        if self.limit is not None:
            self.level = min(self.limit, self.level + amount)

    def learn(self, limit: int | None, remaining: int | None, now: float, exact: bool = False) -> None:
        """Apply one response's `limit` and `remaining` for this bucket; `exact` (a 429's headers): believe
        a `remaining` below our level whatever the slack."""
        if limit is not None and limit > 0:
            effective = float(min(limit, self.flag) if self.flag else limit)
            if self.limit is None:
                self.level = effective
            self.refill(now)
            if effective != self.limit:
                self.limit = effective
                self.level = min(self.level, effective)
            if not self.flag or limit < self.flag:
                self.source = "headers"
        if remaining is None or self.limit is None:
            return
        self.refill(now)
        if not self.synced:
            self.level = min(self.level, float(remaining))
            self.synced = True
        elif remaining < self.level - (0.0 if exact else self.slack()):
            self.level = float(remaining)

    def slack(self) -> float:
        """How far below our level the server's `remaining` must be before we believe it: request counts are
        exact (one request), token counts are rounded by the API (SYNC_SLACK_FRACTION of the limit)."""
        if self.name == "requests" or self.limit is None:
            return 1.0
        return max(1.0, SYNC_SLACK_FRACTION * self.limit)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def header_limits(headers: Mapping[str, Any] | None) -> dict[str, tuple[int | None, int | None]]:
    """{dimension: (limit, remaining)} for the dimensions the headers report."""
    h = lower_headers(headers)
    out = {}
    for dim in DIMENSIONS:
        base = HEADER_PREFIX + HEADER_NAMES[dim]
        limit, remaining = _int(h.get(base + "-limit")), _int(h.get(base + "-remaining"))
        if limit is not None or remaining is not None:
            out[dim] = (limit, remaining)
    return out


class Limiter:
    """The three client-side buckets of one account and model class."""

    def __init__(self, rpm: int | None = None, itpm: int | None = None, otpm: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        now = clock()
        self.buckets = {dim: Bucket(dim, limit, now) for dim, limit in zip(DIMENSIONS, (rpm, itpm, otpm))}
        self.calibrated = False  # a first response (with or without rate-limit headers) has been seen

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def wait_time(self, input_tokens: float, output_tokens: float, now: float | None = None) -> float:
        """Seconds until a request of this size may be sent (0: now)."""
        now = self._now(now)
        amounts = (1.0, float(input_tokens), float(output_tokens))
        return max(self.buckets[dim].wait(amount, now) for dim, amount in zip(DIMENSIONS, amounts))

    def try_reserve(self, input_tokens: float, output_tokens: float, now: float | None = None) -> tuple[Reservation | None, float]:
        """(reservation, 0) when the request may go now, else (None, seconds to wait)."""
        now = self._now(now)
        wait = self.wait_time(input_tokens, output_tokens, now)
        if wait > 0:
            return None, wait
        amounts = (1.0, float(input_tokens), float(output_tokens))
        taken = {}
        for dim, amount in zip(DIMENSIONS, amounts):
            bucket = self.buckets[dim]
            taken[dim] = bucket.need(amount)
            bucket.take(taken[dim], now)
        return Reservation(**taken), 0.0

    def settle(self, reservation: Reservation, input_tokens: float, output_tokens: float, now: float | None = None) -> None:
        """The request was answered: correct the reservation to what was counted (give back or take more)."""
        now = self._now(now)
        for dim, actual in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            delta = reservation.get(dim) - float(actual)
            bucket = self.buckets[dim]
            if delta >= 0:
                bucket.give(delta, now)
            else:
                bucket.take(-delta, now)

    def release(self, reservation: Reservation, now: float | None = None) -> None:
        """The server took nothing (a 429, or a request never sent): give the whole reservation back."""
        now = self._now(now)
        for dim in DIMENSIONS:
            self.buckets[dim].give(reservation.get(dim), now)

    def observe(self, headers: Mapping[str, Any] | None, now: float | None = None) -> None:
        """Learn limits and server-side levels from one response's headers (any status)."""
        now = self._now(now)
        for dim, (limit, remaining) in header_limits(headers).items():
            self.buckets[dim].learn(limit, remaining, now)
        self.calibrated = True

    def rate_limited(self, headers: Mapping[str, Any] | None, reservation: Reservation,
                     retry_after: float | None, now: float | None = None) -> str:
        """A 429: give the reservation back, sync from the headers, pause the bucket that ran out; its name."""
        now = self._now(now)
        self.release(reservation, now)
        # A 429 is the server saying our copy ran ahead: its `remaining` wins outright, with no slack (a
        # `remaining: 0` within the slack was ignored before, so the client stayed a request ahead).
        for dim, (limit, remaining) in header_limits(headers).items():
            self.buckets[dim].learn(limit, remaining, now, exact=True)
        self.calibrated = True
        name = self.exhausted(headers, reservation, now)
        bucket = self.buckets[name]
        pause = retry_after if retry_after is not None else max(DEFAULT_RETRY_AFTER, bucket.wait(reservation.get(name), now))
        bucket.paused_until = max(bucket.paused_until, now + pause)
        if bucket.limit is not None and header_limits(headers).get(name, (None, None))[1] is None:
            bucket.refill(now)
            bucket.level = min(bucket.level, 0.0)  # it ran out, whatever our count said
        return name

    def exhausted(self, headers: Mapping[str, Any] | None, reservation: Reservation, now: float) -> str:
        """Which bucket a 429 was about: the one whose reported remaining covers the least of what we needed,
        else the one our own count says is emptiest, else `requests`."""
        reported = header_limits(headers)
        worst, worst_ratio = None, None
        for dim in DIMENSIONS:
            remaining = reported.get(dim, (None, None))[1]
            need = max(reservation.get(dim), 1.0)
            if remaining is None or remaining >= need:
                continue
            ratio = remaining / need
            if worst_ratio is None or ratio < worst_ratio:
                worst, worst_ratio = dim, ratio
        if worst is not None:
            return worst
        known = {dim: b for dim, b in self.buckets.items() if b.limit is not None}
        for bucket in known.values():
            bucket.refill(now)
        if not known:
            return "requests"
        return min(known, key=lambda dim: known[dim].level / known[dim].limit)

    def describe(self) -> dict[str, dict]:
        """Per dimension: the limit in force (per minute, or None) and where it came from."""
        return {dim: {"per_minute": int(b.limit) if b.limit is not None else None, "source": b.source}
                for dim, b in self.buckets.items()}
