"""Costs and durations per mode for a tallied job: the formulas `plan`, the pilot and run.json's estimate share.

`Tally` totals a job's requests (input, output, the cacheable shared prefix, attachments, the long-prompt
tier's share); `mode_costs` turns a tally into each mode's expected cost, range and duration:

* direct — standard price, every input token billed in full;
* direct_cached — standard price, the shared prefix written once to the 5-minute cache (1.25x), or the
  1-hour one (2x) under `--cache 1h` (https://platform.claude.com/docs/en/build-with-claude/prompt-caching#pricing),
  and read by every other request: what `prepare --mode direct` sends when the prefix is cacheable;
* batch — 50% of standard;
* batch_cached — 50%, with the shared prefix in the cache batch mode chooses for the job's size
  (`estimates.batch_cache_choice`: 1 hour (2x writes) for a large batch, 5 minutes (1.25x) for a small one,
  none when caching would cost more): what batch mode sends. Cache hits in a batch are best-effort,
  reported at 30-98% (https://platform.claude.com/docs/en/build-with-claude/batch-processing); the expected
  cost assumes BATCH_HIT_RATE, the middle of that, and a miss writes the prefix again;
* agents / headless — billed to the user's Claude Code plan, so tokens only and no dollar figure.

A model with a long-prompt tier bills a request whose prompt exceeds its threshold at the tier's prices,
every token of it (Haiku 5.5: 5x above 100,000 tokens, https://platform.claude.com/docs/en/models/haiku-5-5/
overview): the tally keeps those requests' tokens apart and each mode adds the difference.

Every cost is a range as well as an expected value: the input estimate within `tokens.ESTIMATE_ERROR`, the
output between the spread of its source (`estimates.output_estimate`), and batch cache hits between 30% and
98%. Direct-mode time assumes the account limits below (a modest tier); the executor reads the real ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from batchpilot.core.models import BATCH_DISCOUNT, Prices
from batchpilot.core.tokens import ESTIMATE_ERROR, REQUEST_OVERHEAD, request_segments
from batchpilot.prepare.estimates import BATCH_HIT_RANGE, BATCH_HIT_RATE, batch_cache_choice, batch_hit_rates, prefix_cost

WAVE_SIZE = 10
SECONDS_PER_WAVE = 90
HEADLESS_PARALLEL = 4
SECONDS_PER_HEADLESS_ITEM = 45
BATCH_TYPICAL_SECONDS = 3600
BATCH_MAX_SECONDS = 24 * 3600
# Direct-mode time assumes these account limits (a modest tier); actual limits are read from the API later.
ASSUMED_RPM = 1000
ASSUMED_ITPM = 450_000
ASSUMED_OTPM = 90_000
ASSUMED_LATENCY = 20.0
DIRECT_CONCURRENCY = 16


def cached_prefix_tokens(params: dict) -> int:
    """Tokens up to and including the last block that carries cache_control (0 when none)."""
    total, upto = 0, 0
    for seg in request_segments(params):
        total += seg.tokens
        if seg.cache_ttl:
            upto = total
    return upto


def _walk(params: dict) -> tuple[int, int]:
    """(`estimate_input_tokens(params)`, `cached_prefix_tokens(params)`) in one pass over the blocks."""
    total, upto = 0, 0
    for seg in request_segments(params):
        total += seg.tokens
        if seg.cache_ttl:
            upto = total
    return REQUEST_OVERHEAD + total, upto


MEDIA_LISTED = 20  # attachments the plan receipt lists one by one


@dataclass
class Tally:
    """Running token totals over a job's requests; attachments' tokens (pages, pixels) kept apart."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    prefix_tokens: int = 0  # cacheable shared prefix of one request
    max_output_tokens: int = 0
    media: dict = field(default_factory=lambda: {k: {"items": 0, "tokens": 0} for k in ("document", "image")})
    listed: list = field(default_factory=list)
    spread: tuple[float, float] = (1.0, 1.0)  # the output estimate's
    input_error: float = ESTIMATE_ERROR
    # The model's long-prompt tier (`core.models.Tier`): a request whose prompt exceeds its threshold is billed
    # at the tier's prices, every token of it, so such requests' tokens are tallied apart as well.
    long_threshold: int | None = None
    long_input: int = 0
    long_output: int = 0

    def add(self, params: dict, output_estimate: int, input_tokens: int | None = None, item: Any = None) -> None:
        self.requests += 1
        # One walk over the request's blocks gives both its input and its cached prefix: each walk serialises
        # the tools and the output schema, and prepare tallies every request it writes.
        counted, prefix = _walk(params)
        request_in = input_tokens if input_tokens is not None else counted
        attached = getattr(item, "media", None)
        if attached is not None:
            tokens = attached.tokens
            request_in += tokens
            entry = self.media[attached.kind]
            entry["items"] += 1
            entry["tokens"] += tokens
            if attached.kind == "document":
                entry["pages"] = entry.get("pages", 0) + (attached.pages or 0)
            else:
                entry["pixels"] = entry.get("pixels", 0) + (attached.width or 0) * (attached.height or 0)
            if len(self.listed) < MEDIA_LISTED:
                figures = ({"pages": attached.pages} if attached.kind == "document"
                           else {"width": attached.width, "height": attached.height})
                self.listed.append({"custom_id": item.custom_id, "type": attached.kind,
                                    "media_type": attached.media_type, **figures, "tokens": tokens})
        self.input_tokens += request_in
        request_out = min(output_estimate, int(params.get("max_tokens", output_estimate)))
        self.output_tokens += request_out
        if self.long_threshold is not None and request_in > self.long_threshold:
            self.long_input += request_in
            self.long_output += request_out
        self.max_output_tokens += int(params.get("max_tokens", 0))
        self.prefix_tokens = max(self.prefix_tokens, prefix)

    @classmethod
    def for_prices(cls, prices: Prices | None, **fields: Any) -> "Tally":
        """An empty tally that keeps apart the requests above `prices`' long-prompt tier, if it has one."""
        tier = prices.long_prompt if prices is not None else None
        return cls(long_threshold=tier.threshold if tier is not None else None, **fields)

    def scaled(self, input_scale: float, output_scale: float) -> "Tally":
        """The same job with its input and output totals scaled (a range's end)."""
        return dataclasses.replace(self, input_tokens=round(self.input_tokens * input_scale),
                                   output_tokens=min(round(self.output_tokens * output_scale), self.max_output_tokens),
                                   prefix_tokens=round(self.prefix_tokens * input_scale),
                                   long_input=round(self.long_input * input_scale),
                                   long_output=round(self.long_output * output_scale))


@dataclass
class Mode:
    name: str
    cost_usd: float | None
    seconds: float
    note: str
    extra: dict = field(default_factory=dict)
    cost_range: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        cost = None if self.cost_usd is None else round(self.cost_usd, 4)
        span = None if self.cost_range is None else [round(self.cost_range[0], 4), round(self.cost_range[1], 4)]
        return {"cost_usd": cost, "cost_range_usd": span, "expected_seconds": round(self.seconds), "note": self.note,
                **self.extra}


def _costs(t: Tally, prices: Prices, batch_ttl: str | None, hit_rate: float, direct_ttl: str = "5m") -> dict[str, float]:
    """The dollar cost of each priced mode for the tally; a batch's shared prefix under `batch_ttl` (None: not
    cached), its in-batch hits at `hit_rate` for a 1-hour entry (`estimates.batch_hit_rates`); direct's under
    `direct_ttl`."""
    per = 1_000_000

    def with_cache(write: float, hit: float) -> float:
        """Standard-price cost with the prefix written once, then read on a hit and written again on a miss."""
        prefix_cost_ = t.prefix_tokens * prices.input * prefix_cost(t.requests, write, prices.read_multiplier, hit)
        rest = (t.input_tokens - t.prefix_tokens * t.requests) * prices.input
        return (prefix_cost_ + rest + t.output_tokens * prices.output) / per + long_extra

    # Requests above the long-prompt tier's threshold pay the tier's prices: the difference, on their tokens
    # (their shared prefix priced as plain input: it is a sliver of a prompt that long).
    tier = prices.long_prompt
    long_extra = ((tier.input - prices.input) * t.long_input + (tier.output - prices.output) * t.long_output) / per \
        if tier is not None else 0.0
    direct = (t.input_tokens * prices.input + t.output_tokens * prices.output) / per + long_extra
    out = {"direct": direct, "batch": direct * BATCH_DISCOUNT, "direct_cached": direct, "batch_cached": direct * BATCH_DISCOUNT}
    if t.prefix_tokens and t.requests:
        # The TTL follows the mode (build.choose_cache), and so does the write price.
        out["direct_cached"] = with_cache(prices.write_1h if direct_ttl == "1h" else prices.write_5m, 1.0)
        if batch_ttl:
            write = prices.write_1h if batch_ttl == "1h" else prices.write_5m
            out["batch_cached"] = with_cache(write, batch_hit_rates(t.requests, hit_rate)[batch_ttl]) * BATCH_DISCOUNT
    return out


def batch_ttl_for(t: Tally, prices: Prices | None) -> str | None:
    """The TTL batch mode's `auto` picks for this job (`estimates.batch_cache_choice`), None for no cache."""
    if prices is None or not t.prefix_tokens:
        return None
    choice, _, _ = batch_cache_choice(t.requests, prices.write_5m, prices.write_1h, prices.read_multiplier)
    return None if choice == "none" else choice


def mode_costs(t: Tally, prices: Prices | None, batch_ttl: str | None = "auto", direct_ttl: str = "5m") -> dict[str, Mode]:
    """Cost (expected and range) and duration per mode for the tallied job. `batch_ttl`: the cache the batch
    requests carry ("5m", "1h", None for none), or "auto" for what batch mode would choose for the job;
    `direct_ttl`: the cache direct requests carry when cached ("5m", or "1h" under `--cache 1h`)."""
    direct = direct_cached = batch = cached = None
    ranges: dict[str, tuple[float, float]] = {}
    if batch_ttl == "auto":
        batch_ttl = batch_ttl_for(t, prices)
    if prices is not None:
        expected = _costs(t, prices, batch_ttl, BATCH_HIT_RATE, direct_ttl)
        low = _costs(t.scaled(1 - t.input_error, t.spread[0]), prices, batch_ttl, BATCH_HIT_RANGE[1], direct_ttl)
        high = _costs(t.scaled(1 + t.input_error, t.spread[1]), prices, batch_ttl, BATCH_HIT_RANGE[0], direct_ttl)
        ranges = {name: (low[name], high[name]) for name in expected}
        direct, batch, direct_cached, cached = (expected[k] for k in ("direct", "batch", "direct_cached", "batch_cached"))
    direct_seconds = max(
        t.requests / ASSUMED_RPM * 60,
        t.input_tokens / ASSUMED_ITPM * 60,
        t.output_tokens / ASSUMED_OTPM * 60,
        math.ceil(t.requests / DIRECT_CONCURRENCY) * ASSUMED_LATENCY,
    )
    plan_note = "billed to your Claude Code plan (subscription usage), no per-token charge"
    return {
        "direct": Mode("direct", direct, direct_seconds,
                       f"standard price; time assumes {ASSUMED_RPM} requests/min and {ASSUMED_ITPM:,} input tokens/min",
                       cost_range=ranges.get("direct")),
        "direct_cached": Mode("direct_cached", direct_cached, direct_seconds,
                              f"standard price, shared instructions written once to the {'1-hour' if direct_ttl == '1h' else '5-minute'} "
                              "cache and read by every other request (what direct mode sends)" if t.prefix_tokens
                              else "the shared instructions are below the model's minimum cacheable length",
                              cost_range=ranges.get("direct_cached")),
        "batch": Mode("batch", batch, BATCH_TYPICAL_SECONDS, "50% price; most batches end within 1 hour, at most 24 hours",
                      {"max_seconds": BATCH_MAX_SECONDS}, ranges.get("batch")),
        "batch_cached": Mode("batch_cached", cached, BATCH_TYPICAL_SECONDS, _batch_cached_note(t, batch_ttl),
                             {"max_seconds": BATCH_MAX_SECONDS, "cache": batch_ttl or "none"}, ranges.get("batch_cached")),
        "agents": Mode("agents", None, math.ceil(t.requests / WAVE_SIZE) * SECONDS_PER_WAVE,
                       f"Claude Code subagents in waves of {WAVE_SIZE}; {plan_note}"),
        "headless": Mode("headless", None, math.ceil(t.requests / HEADLESS_PARALLEL) * SECONDS_PER_HEADLESS_ITEM,
                         f"`claude -p` subprocesses, {HEADLESS_PARALLEL} at a time; {plan_note}"),
    }


def _batch_cached_note(t: Tally, batch_ttl: str | None) -> str:
    if not t.prefix_tokens:
        return "the shared instructions are below the model's minimum cacheable length"
    if not batch_ttl:
        return "50% price; for this job's size caching the shared instructions costs more than it saves, so none"
    hits = batch_hit_rates(t.requests, BATCH_HIT_RATE)
    ttl = "1-hour" if batch_ttl == "1h" else "5-minute"
    return (f"50% price, shared instructions in the {ttl} cache; cache hits in a batch are best-effort (expected at "
            f"{hits[batch_ttl]:.0%}, range {BATCH_HIT_RANGE[0]:.0%}-{BATCH_HIT_RANGE[1]:.0%} for a 1-hour entry)")
