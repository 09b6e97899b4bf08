"""Rate limits as token buckets, and the `anthropic-ratelimit-*` headers that report them.

Each bucket holds up to `limit` units and refills continuously at `limit / 60` per wall-clock second, as the
real API's limits do (there is no minute boundary). POST /v1/messages needs one request unit and its
uncached input tokens up front (cache reads do not count, as on most real models) and is refused with a 429
when either is short or the output bucket is empty; its output tokens are taken once the answer is known, so
the output bucket may dip below zero and then blocks until it refills. Batch endpoints have a separate
request bucket. Remaining counts are reported exactly (the real API rounds token counts to thousands).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone


class Bucket:
    """`limit` units per minute; `remaining()` after refilling to now."""

    def __init__(self, limit: int):
        self.limit = max(int(limit), 1)
        self.level = float(self.limit)
        self.stamp = time.monotonic()

    @property
    def rate(self) -> float:
        return self.limit / 60.0

    def _refill(self, now: float) -> None:
        self.level = min(float(self.limit), self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` units are available (0 if now); amounts above the limit wait for a full bucket."""
        self._refill(now)
        need = min(amount, float(self.limit)) - self.level
        return 0.0 if need <= 0 else need / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def until_full(self) -> float:
        return max(0.0, (self.limit - self.level) / self.rate)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RateLimiter:
    """The Messages buckets (requests, input tokens, output tokens) and the batch-endpoint request bucket."""

    def __init__(self, rpm: int, itpm: int, otpm: int, batch_rpm: int):
        self._args = (rpm, itpm, otpm, batch_rpm)
        self.reset()

    def reset(self) -> None:
        rpm, itpm, otpm, batch_rpm = self._args
        self.requests, self.input, self.output = Bucket(rpm), Bucket(itpm), Bucket(otpm)
        self.batch = Bucket(batch_rpm)
        self._lock = threading.Lock()

    def set_limits(self, rpm: int | None = None, itpm: int | None = None, otpm: int | None = None) -> dict:
        """Change limits now, as an account's tier or a shared organisation's use can change them mid-run.

        Each bucket keeps its level (capped at the new limit): a lowered limit binds at once, a raised one
        refills at its new rate. Returns the limits now in force."""
        now = time.monotonic()
        with self._lock:
            for bucket, limit in ((self.requests, rpm), (self.input, itpm), (self.output, otpm)):
                if limit is not None:
                    bucket._refill(now)
                    bucket.limit = max(int(limit), 1)
                    bucket.level = min(bucket.level, float(bucket.limit))
            return {"requests_per_minute": self.requests.limit, "input_tokens_per_minute": self.input.limit,
                    "output_tokens_per_minute": self.output.limit}

    def admit_message(self, input_tokens: int) -> float:
        """Take one request and `input_tokens`; return 0, or the seconds to wait (nothing taken) when limited."""
        now = time.monotonic()
        with self._lock:
            wait = max(
                self.requests.wait_for(1, now),
                self.input.wait_for(input_tokens, now),
                self.output.wait_for(1, now),
            )
            if wait > 0:
                return wait
            self.requests.take(1)
            self.input.take(min(input_tokens, self.input.limit))
            return 0.0

    def record_output(self, output_tokens: int, refund_input: int = 0) -> None:
        """Take the answer's output tokens; give back input tokens that turned out to be cache reads."""
        with self._lock:
            self.output.take(output_tokens)
            self.input.level = min(float(self.input.limit), self.input.level + refund_input)

    def admit_batch_call(self) -> float:
        now = time.monotonic()
        with self._lock:
            wait = self.batch.wait_for(1, now)
            if wait == 0:
                self.batch.take(1)
            return wait

    def message_headers(self) -> list[tuple[str, str]]:
        """The anthropic-ratelimit-* headers as of now; `tokens` reports the tighter of input and output."""
        now = time.monotonic()
        wall = time.time()
        with self._lock:
            for bucket in (self.requests, self.input, self.output):
                bucket._refill(now)
            tighter = min((self.input, self.output), key=lambda b: b.level / b.limit)
            headers = []
            for name, bucket in (("requests", self.requests), ("input-tokens", self.input),
                                 ("output-tokens", self.output), ("tokens", tighter)):
                headers += [
                    (f"anthropic-ratelimit-{name}-limit", str(bucket.limit)),
                    (f"anthropic-ratelimit-{name}-remaining", str(max(0, math.floor(bucket.level)))),
                    (f"anthropic-ratelimit-{name}-reset", rfc3339(wall + bucket.until_full())),
                ]
            return headers


def retry_after(wait: float) -> str:
    """The retry-after value for a wait: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))
