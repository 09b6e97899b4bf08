"""Model facts: prices (all tiers), cache multipliers, minimum cacheable prefix, output ceilings, and what a
model refuses, for the models batchpilot knows, one row per model, each citing the docs page it came from.

Prices are USD per million tokens at the standard (non-batch) rate, checked against the platform docs'
model pages and pricing page on PRICES_AS_OF. A row's `source` is the page that states its figures; where
a figure was not found on a docs page (only in third-party summaries), the row's `unverified` names it,
and the value chosen is the one that fails safe (a higher cache minimum: a prefix is then left uncached,
never billed as a write that is not read).

Cost rules (they stack): the Message Batches API bills 50% of every token type
(https://platform.claude.com/docs/en/about-claude/pricing, "Batch processing"); a 5-minute cache write
costs `write_5m` x input, a 1-hour write `write_1h` x input, a cache read `read_multiplier` x input
(https://platform.claude.com/docs/en/about-claude/pricing, "Model pricing"). A model with a long-prompt
tier (Haiku 5.5) bills every token of a request whose prompt (input + cache reads + cache writes) exceeds
`long_threshold` at the tier's prices (https://platform.claude.com/docs/en/models/haiku-5-5/overview).
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-12-01"
BATCH_DISCOUNT = 0.5
CACHE_WRITE_5M = 1.25
CACHE_WRITE_1H = 2.0
# The token counts of an API `usage` object that are billed (and that the run's records total up).
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")

PRICING = "https://platform.claude.com/docs/en/about-claude/pricing"
DOCS = "https://platform.claude.com/docs/en/models/"


@dataclass(frozen=True)
class Tier:
    """Prices that replace the base ones for a request whose prompt exceeds `threshold` tokens."""

    threshold: int
    input: float
    output: float


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
    source: str = PRICING  # the docs page that states this row's figures
    write_5m: float = CACHE_WRITE_5M
    write_1h: float = CACHE_WRITE_1H
    batch_max_output: int | None = None  # None: the same as max_output
    long_prompt: Tier | None = None
    json_schema_output: bool = True  # native output_config.format json_schema
    forced_tool: bool = True  # tool_choice {type: tool|any}; False: the API answers 400
    refused_thinking: tuple[str, ...] = ()  # thinking.type values the API answers with 400
    unverified: str = ""  # which figures no docs page stated
    # Claude Opus 4.7 and later (and Haiku 5.5) use a newer tokenizer that counts the same text as about 30%
    # more tokens than Haiku 4.5 (https://platform.claude.com/docs/en/models/haiku-5-5/overview).
    tokenizer_factor: float = 1.3


def _m(id_: str, inp: float, out: float, max_out: int, min_cache: int, read: float, tier: str, page: str, **kw) -> Model:
    return Model(id_, inp, out, max_out, min_cache, read, tier, page, **kw)


MODELS: dict[str, Model] = {
    m.id: m
    for m in [
        # Fable 5.1 shares Opus 5.5's breaking changes: thinking cannot be disabled, forced tool use errors.
        _m("claude-fable-5-1", 10.0, 50.0, 128_000, 512, 0.025, "opus", DOCS + "opus-5-5/overview",
           forced_tool=False, refused_thinking=("disabled", "enabled"),
           unverified="minimum cacheable prefix (512: third-party summaries)"),
        _m("claude-fable-5", 10.0, 50.0, 128_000, 512, 0.1, "opus", PRICING,
           unverified="minimum cacheable prefix (512: third-party summaries)"),
        _m("claude-opus-5-5", 4.0, 20.0, 128_000, 512, 0.05, "opus", DOCS + "opus-5-5/overview",
           batch_max_output=300_000, forced_tool=False, refused_thinking=("disabled", "enabled"),
           unverified="minimum cacheable prefix (512: third-party summaries)"),
        _m("claude-opus-5", 5.0, 25.0, 128_000, 512, 0.1, "opus", DOCS + "opus-5/overview",
           batch_max_output=300_000, unverified="minimum cacheable prefix (512: third-party summaries)"),
        _m("claude-opus-4-8", 5.0, 25.0, 128_000, 1024, 0.1, "opus",
           "https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-8"),
        _m("claude-opus-4-7", 5.0, 25.0, 128_000, 4096, 0.1, "opus", PRICING, refused_thinking=("enabled",),
           unverified="minimum cacheable prefix (4,096: third-party summaries disagree, 2,048 or 4,096; the higher "
                      "fails safe)"),
        _m("claude-opus-4-6", 5.0, 25.0, 128_000, 4096, 0.1, "opus",
           "https://platform.claude.com/docs/en/build-with-claude/prompt-caching", tokenizer_factor=1.0),
        _m("claude-opus-4-5", 5.0, 25.0, 64_000, 4096, 0.1, "opus",
           "https://platform.claude.com/docs/en/build-with-claude/prompt-caching", tokenizer_factor=1.0),
        _m("claude-sonnet-5-5", 2.0, 10.0, 128_000, 512, 0.1, "sonnet", DOCS + "sonnet-5-5/overview",
           batch_max_output=300_000, forced_tool=False, refused_thinking=("disabled", "enabled"),
           unverified="minimum cacheable prefix (512: third-party summaries)"),
        _m("claude-sonnet-5", 2.0, 10.0, 128_000, 1024, 0.1, "sonnet", DOCS + "sonnet-5/overview",
           batch_max_output=300_000, refused_thinking=("enabled",),
           unverified="minimum cacheable prefix (1,024: third-party summaries)"),
        # The caching page lists 1,024 for Sonnet 4.6, but users report no cache below 2,048: fail safe.
        _m("claude-sonnet-4-6", 3.0, 15.0, 128_000, 2048, 0.1, "sonnet",
           "https://platform.claude.com/docs/en/build-with-claude/prompt-caching",
           unverified="minimum cacheable prefix (page: 1,024; observed: 2,048)", tokenizer_factor=1.0),
        _m("claude-sonnet-4-5", 3.0, 15.0, 64_000, 1024, 0.1, "sonnet",
           "https://platform.claude.com/docs/en/build-with-claude/prompt-caching", tokenizer_factor=1.0),
        _m("claude-haiku-5-5", 0.10, 0.50, 128_000, 512, 0.1, "haiku", DOCS + "haiku-5-5/overview",
           batch_max_output=300_000, long_prompt=Tier(100_000, 0.50, 2.50), refused_thinking=("enabled",),
           unverified="minimum cacheable prefix (512: third-party summaries)"),
        _m("claude-haiku-4-5", 1.0, 5.0, 64_000, 4096, 0.1, "haiku",
           "https://platform.claude.com/docs/en/build-with-claude/prompt-caching", tokenizer_factor=1.0),
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


def tokenizer_factor(model_id: str) -> float:
    """How many tokens `model_id` counts per token of the older tokenizer (unknown models: the newer one's)."""
    model = find_model(model_id)
    return model.tokenizer_factor if model else 1.3


def accepts_forced_tool(model_id: str) -> bool:
    """Whether `tool_choice: {type: tool}` is accepted. An unknown model (priced with --price-in/--price-out)
    keeps the template's choice: the table has nothing to say about it, and the API's 400 would name it."""
    model = find_model(model_id)
    return model is None or model.forced_tool


@dataclass(frozen=True)
class Prices:
    """Per-million-token prices in force for one run (a known model's, or the user's --price-in/--price-out)."""

    input: float
    output: float
    read_multiplier: float = 0.1
    long_prompt: Tier | None = None
    write_5m: float = CACHE_WRITE_5M
    write_1h: float = CACHE_WRITE_1H

    def as_manifest(self) -> dict:
        """The run.json `prices` fields (read back by `from_manifest`)."""
        out = {"input_per_mtok": self.input, "output_per_mtok": self.output, "read_multiplier": self.read_multiplier,
               "write_5m": self.write_5m, "write_1h": self.write_1h}
        if self.long_prompt:
            out["long_prompt"] = {"threshold": self.long_prompt.threshold, "input_per_mtok": self.long_prompt.input,
                                  "output_per_mtok": self.long_prompt.output}
        return out

    @classmethod
    def from_manifest(cls, p: dict) -> "Prices":
        tier = p.get("long_prompt")
        return cls(float(p["input_per_mtok"]), float(p["output_per_mtok"]), float(p.get("read_multiplier") or 0.1),
                   Tier(int(tier["threshold"]), float(tier["input_per_mtok"]), float(tier["output_per_mtok"]))
                   if isinstance(tier, dict) else None,
                   float(p.get("write_5m") or CACHE_WRITE_5M), float(p.get("write_1h") or CACHE_WRITE_1H))


def prices_for(model_id: str, price_in: float | None = None, price_out: float | None = None) -> Prices | None:
    """Explicit prices win (one tier); else the table's; None when the model is unknown (callers fail closed)."""
    model = find_model(model_id)
    if price_in is not None and price_out is not None:
        return Prices(price_in, price_out, model.read_multiplier if model else 0.1)
    if model is None:
        return None
    return Prices(model.input, model.output, model.read_multiplier, model.long_prompt, model.write_5m, model.write_1h)


def cost_usd(prices: Prices, usage: dict, batch: bool) -> float:
    """Cost of one response's usage: input, output, cache writes (5m/1h) and cache reads, optionally batched.

    `usage` uses the API's keys: input_tokens, output_tokens, cache_read_input_tokens,
    cache_creation_input_tokens and the optional cache_creation breakdown by TTL. A request whose prompt
    exceeds the long-prompt tier's threshold is billed at the tier's prices, every token of it.
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
    price_in, price_out = prices.input, prices.output
    tier = prices.long_prompt
    if tier is not None and inp + read + write > tier.threshold:
        price_in, price_out = tier.input, tier.output
    total = (
        inp * price_in
        + w5m * price_in * prices.write_5m
        + w1h * price_in * prices.write_1h
        + read * price_in * prices.read_multiplier
        + out * price_out
    ) / per
    return total * (BATCH_DISCOUNT if batch else 1.0)
