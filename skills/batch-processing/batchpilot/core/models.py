"""Model facts: prices, output limits and minimum cacheable prefix, for the models batchpilot knows.

Prices are USD per million tokens at the standard (non-batch) rate. Sources: Anthropic's pricing, batch and
prompt-caching pages as published up to PRICES_AS_OF; the 5.5 generation's prices come from quotes of the
pricing page and may change. Re-check before quoting a figure to anyone.

Cost rules (they stack): the Message Batches API bills 50% of every token type; a 5-minute cache write costs
1.25x input, a 1-hour write 2x, a cache read `read_multiplier` x input (0.1 on most models).
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-10-08"
BATCH_DISCOUNT = 0.5
CACHE_WRITE_5M = 1.25
CACHE_WRITE_1H = 2.0
# The token counts of an API `usage` object that are billed (and that the run's records total up).
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


@dataclass(frozen=True)
class Model:
    """What batchpilot needs to know of one model."""

    id: str
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens
    max_output: int  # largest max_tokens the Messages API accepts
    min_cache_tokens: int  # shorter prefixes are silently not cached
    read_multiplier: float = 0.1
    tier: str = "sonnet"  # haiku / sonnet / opus: the subagent model hint


MODELS: dict[str, Model] = {
    m.id: m
    for m in [
        Model("claude-fable-5-1", 10.0, 50.0, 128_000, 512, 0.025, "opus"),
        Model("claude-fable-5", 10.0, 50.0, 128_000, 512, 0.1, "opus"),
        Model("claude-opus-5-5", 4.0, 20.0, 128_000, 512, 0.05, "opus"),
        Model("claude-opus-5", 5.0, 25.0, 128_000, 512, 0.1, "opus"),
        Model("claude-opus-4-8", 5.0, 25.0, 128_000, 4096, 0.1, "opus"),
        Model("claude-opus-4-7", 5.0, 25.0, 128_000, 4096, 0.1, "opus"),
        Model("claude-opus-4-6", 5.0, 25.0, 128_000, 4096, 0.1, "opus"),
        Model("claude-opus-4-5", 5.0, 25.0, 64_000, 4096, 0.1, "opus"),
        Model("claude-sonnet-5-5", 2.0, 10.0, 128_000, 512, 0.05, "sonnet"),
        Model("claude-sonnet-5", 2.0, 10.0, 128_000, 512, 0.1, "sonnet"),
        Model("claude-sonnet-4-6", 3.0, 15.0, 128_000, 2048, 0.1, "sonnet"),
        Model("claude-sonnet-4-5", 3.0, 15.0, 64_000, 1024, 0.1, "sonnet"),
        Model("claude-haiku-5-5", 0.10, 0.50, 64_000, 512, 0.1, "haiku"),
        Model("claude-haiku-4-5", 1.0, 5.0, 64_000, 4096, 0.1, "haiku"),
    ]
}


def find_model(model_id: str) -> Model | None:
    """The model for an API id, accepting dated snapshots (`claude-haiku-4-5-20251001`); None when unknown."""
    if model_id in MODELS:
        return MODELS[model_id]
    for known in sorted(MODELS, key=len, reverse=True):
        rest = model_id[len(known):]
        if model_id.startswith(known) and rest[:1] == "-" and rest[1:].isdigit():
            return MODELS[known]
    return None


@dataclass(frozen=True)
class Prices:
    """Per-million-token prices in force for one run (a known model's, or the user's --price-in/--price-out)."""

    input: float
    output: float
    read_multiplier: float = 0.1


def prices_for(model_id: str, price_in: float | None = None, price_out: float | None = None) -> Prices | None:
    """Explicit prices win; else the table's; None when the model is unknown (callers fail closed)."""
    model = find_model(model_id)
    if price_in is not None and price_out is not None:
        return Prices(price_in, price_out, model.read_multiplier if model else 0.1)
    if model is None:
        return None
    return Prices(model.input, model.output, model.read_multiplier)


def cost_usd(prices: Prices, usage: dict, batch: bool) -> float:
    """Cost of one response's usage: input, output, cache writes (5m/1h) and cache reads, optionally batched.

    `usage` uses the API's keys: input_tokens, output_tokens, cache_read_input_tokens,
    cache_creation_input_tokens and the optional cache_creation breakdown by TTL.
    """
    per = 1_000_000
    inp = usage.get("input_tokens") or 0
    out = usage.get("output_tokens") or 0
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_creation_input_tokens") or 0
    breakdown = usage.get("cache_creation") or {}
    w1h = breakdown.get("ephemeral_1h_input_tokens") or 0
    w5m = breakdown.get("ephemeral_5m_input_tokens")
    if w5m is None:
        w5m = max(write - w1h, 0)
    total = (
        inp * prices.input
        + w5m * prices.input * CACHE_WRITE_5M
        + w1h * prices.input * CACHE_WRITE_1H
        + read * prices.input * prices.read_multiplier
        + out * prices.output
    ) / per
    return total * (BATCH_DISCOUNT if batch else 1.0)
