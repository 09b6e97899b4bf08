"""The direct executor's tally: what was sent and answered, the progress line on stderr, and the receipt's
counts.

The rates on the progress line are measured over the last RATE_WINDOW seconds and shown against the limits
the limiter knows (`?` for one not known yet); the ETA uses the slower of the measured request rate and the
rate the known limits allow in the long run at the average item's measured size.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import Callable

from batchpilot.core.progress import Progress
from batchpilot.executors.direct.limiter import Limiter

PROGRESS_EVERY = 0.5  # seconds between progress-line refreshes
RATE_WINDOW = 10.0  # seconds of history behind the rates on the progress line
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class DirectTally:
    """Counters of one direct run. `todo` is what this run set out to send (items minus already succeeded)."""

    def __init__(self, total_items: int):
        self.total_items = total_items
        self.todo = 0
        self.already_done = 0
        self.succeeded = 0
        self.errored: Counter = Counter()  # error type -> items recorded as errored
        self.sent = 0
        self.rate_limited = 0
        self.retried = 0
        self.abandoned = 0
        self.tokens: Counter = Counter()
        self.recent: deque[tuple[float, int, int, int]] = deque()  # (t, requests, input, output)
        self.started = time.monotonic()

    @property
    def finished(self) -> int:
        return self.succeeded + sum(self.errored.values())

    def answered(self, usage: dict) -> None:
        """Count one succeeded answer's tokens (cache writes count toward the input rate, reads do not)."""
        inp = int(usage.get("input_tokens") or 0)
        out = int(usage.get("output_tokens") or 0)
        write = int(usage.get("cache_creation_input_tokens") or 0)
        read = int(usage.get("cache_read_input_tokens") or 0)
        self.tokens.update(input=inp, output=out, cache_write=write, cache_read=read)
        self.recent.append((time.monotonic(), 1, inp + write, out))
        self.succeeded += 1

    def rates(self, now: float) -> tuple[float, float, float]:
        """Requests, input and output tokens per minute over the last RATE_WINDOW seconds."""
        while self.recent and self.recent[0][0] < now - RATE_WINDOW:
            self.recent.popleft()
        window = max(min(RATE_WINDOW, now - self.started), 1e-6)
        return tuple(sum(r[i] for r in self.recent) / window * 60 for i in (1, 2, 3))  # type: ignore[return-value]

    def sustainable_per_minute(self, limiter: Limiter) -> float | None:
        """Items per minute the known limits allow in the long run, at the average item's measured size."""
        finished = self.succeeded or 1
        sizes = {"requests": 1.0, "input_tokens": (self.tokens["input"] + self.tokens["cache_write"]) / finished,
                 "output_tokens": self.tokens["output"] / finished}
        rates = [b.limit / sizes[dim] for dim, b in limiter.buckets.items() if b.limit and sizes[dim] > 0]
        return min(rates) if rates else None

    def label(self, limiter: Limiter, spent: float) -> str:
        """The progress line's text: counts, rates against limits, 429s, money spent, ETA."""
        req, inp, out = self.rates(time.monotonic())
        limits = limiter.describe()

        def against(value: float, dim: str) -> str:
            limit = limits[dim]["per_minute"]
            return f"{short(value)}/{short(limit) if limit else '?'}"

        errored = sum(self.errored.values())
        # The ETA comes from the measured pace (items answered a minute, over the whole run so far); the
        # limits' long-run pace is used only before the first answer.
        elapsed = time.monotonic() - self.started
        measured = self.finished / elapsed * 60 if self.finished and elapsed > 0 else 0.0
        pace = measured or (self.sustainable_per_minute(limiter) or 0.0)
        eta = f"{(self.todo - self.finished) / pace * 60:.0f}s" if pace > 0 else "?"
        # Most important first: a narrow terminal cuts the end of the line.
        return (f"{self.succeeded} ok {errored} err {self.retried} retries | ETA {eta} | ${spent:.4f} | "
                f"{against(req, 'requests')} rpm | in {against(inp, 'input_tokens')} out "
                f"{against(out, 'output_tokens')} tpm | 429s {self.rate_limited}")

    def journal_fields(self, not_run: int) -> dict:
        """The counts the `direct_stopped` journal event carries."""
        return {"succeeded": self.succeeded, "errored": sum(self.errored.values()), "not_run": not_run,
                "requests_sent": self.sent, "rate_limited": self.rate_limited}

    def receipt(self, duration: float, not_run: int) -> dict:
        """The receipt's counts, tokens and pace (`not_run`: items this run set out to send but did not)."""
        return {
            "items": self.total_items,
            "counts": {"succeeded": self.succeeded, "errored": dict(sorted(self.errored.items())),
                       "skipped_already_done": self.already_done, "not_run": not_run},
            "requests_sent": self.sent,
            "rate_limited_429": self.rate_limited,
            "retries": self.retried,
            "abandoned_in_flight": self.abandoned,
            "tokens": {k: self.tokens.get(k, 0) for k in TOKEN_KINDS},
            "duration_s": round(duration, 3),
            "requests_per_minute": round(self.finished / duration * 60, 1) if duration > 0 else None,
        }


async def tick(tally: DirectTally, limiter: Limiter, progress: Progress, spent: Callable[[], float]) -> None:
    """Refresh the progress line until cancelled; say once what the limits are when the first answer told us."""
    reported = False
    while True:
        progress.update(tally.finished, tally.todo, tally.label(limiter, spent()))
        if limiter.calibrated and not reported:
            reported = True
            described = ", ".join(f"{dim.replace('_', ' ')} {short(v['per_minute']) if v['per_minute'] else 'unknown'}"
                                  f"/min ({v['source']})" for dim, v in limiter.describe().items())
            progress.stage(f"limits: {described}")
        await asyncio.sleep(PROGRESS_EVERY)


def short(value: float | None) -> str:
    """A compact number for the progress line: 950, 12k, 40M."""
    if value is None:
        return "?"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= 10 * scale:
            return f"{value / scale:.0f}{suffix}"
    return f"{value:.0f}"
