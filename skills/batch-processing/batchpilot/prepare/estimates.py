"""The evidence behind plan's numbers: the output estimate and its spread, and the cache's break-even.

The output estimate comes, in order of preference, from the template's example output
(`examples/output.json`, counted with the model's tokenizer factor), its `output_tokens_estimate`, or a
share of max_tokens, each with the spread a real answer's length shows between items; `run --pilot N`
measures it instead (the "pilot" spread). A cache choice pays `write` x input for the prefix and, on each
later request, `read` x on a hit or `write` x again on a miss, so it saves money above the hit rate
(write - 1) / (write - read): 22% for the 5-minute cache, 53% for the 1-hour one at the usual multipliers.
Batch mode picks the cheapest of no cache, 5 minutes and 1 hour for the job's size (`batch_cache_choice`):
the first write is paid once whatever the size, and a 5-minute entry is assumed to serve only the requests
processed within one 5-minute window of the batch, so small batches favour 5 minutes and large ones 1 hour.
In-batch hits are best-effort, reported at 30-98% (https://platform.claude.com/docs/en/build-with-claude/
batch-processing), so plan assumes the middle, BATCH_HIT_RATE.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchpilot.core.models import Prices, tokenizer_factor
from batchpilot.core.tokens import estimate_json

if TYPE_CHECKING:
    from batchpilot.prepare.costs import Tally

DEFAULT_OUTPUT_SHARE = 0.25
BATCH_HIT_RATE = 0.64  # the middle of the 30-98% in-batch hit rates the batch docs report
BATCH_HIT_RANGE = (0.30, 0.98)
FIVE_MINUTE_REQUESTS = 100  # requests of a batch assumed to be processed within one 5-minute window
LARGE_BATCH = 10_000  # the size assumed while a job's items are still streaming (not yet counted)
# How far one source's output estimate may be from the bill (low, high multipliers): an example output is one
# answer, and answers vary with the item; a template author's guess and a share of max_tokens vary more.
# The example's spread is the widest billed/estimated output ratio bench/bench_estimates.py measured over the
# bundled templates, with a margin.
OUTPUT_SPREAD = {"example": (0.25, 3.0), "template": (0.25, 4.0), "max_tokens": (0.05, 4.0), "pilot": (0.85, 1.15)}

@dataclass(frozen=True)
class OutputEstimate:
    """Output tokens per request: the expected figure, the spread around it, and where it came from."""

    tokens: int
    source: str  # example / template / max_tokens / pilot
    spread: tuple[float, float]

    def describe(self) -> str:
        words = {"example": "the template's example output (examples/output.json)",
                 "template": "the template's output_tokens_estimate", "max_tokens": f"{DEFAULT_OUTPUT_SHARE:.0%} of max_tokens",
                 "pilot": "the pilot's measured answers"}
        low, high = self.spread
        return f"{words[self.source]}: {self.tokens} tokens per item, billed between x{low:g} and x{high:g} of it"


def output_estimate(template, model: str, max_tokens: int) -> OutputEstimate:
    """The template's output estimate: its example output counted, else its stated guess, else a share."""
    example = template.path / "examples" / "output.json"
    try:
        value = json.loads(example.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        value = None
    if value is not None:
        tokens = math.ceil(estimate_json(value) * tokenizer_factor(model))
        return OutputEstimate(max(1, min(tokens, max_tokens)), "example", OUTPUT_SPREAD["example"])
    if template.output_tokens_estimate:
        return OutputEstimate(min(template.output_tokens_estimate, max_tokens), "template", OUTPUT_SPREAD["template"])
    return OutputEstimate(max(1, int(max_tokens * DEFAULT_OUTPUT_SHARE)), "max_tokens", OUTPUT_SPREAD["max_tokens"])


def break_even_hit_rate(write: float, read: float) -> float:
    """The hit rate above which writing the prefix to the cache (and rewriting it on a miss) saves money."""
    return (write - 1) / (write - read)



def batch_hit_rates(requests: int | None, hit_rate: float = BATCH_HIT_RATE) -> dict[str, float]:
    """The expected in-batch hit rate of each TTL for a batch of `requests` (None: a large one).

    A hit needs the entry still alive when the next request sharing it is processed. The batch docs advise
    the 1-hour cache because a batch can take longer than 5 minutes to process
    (https://platform.claude.com/docs/en/build-with-claude/batch-processing), so the 1-hour entry gets
    `hit_rate`; the 5-minute one gets it only for the share of the batch assumed to be processed within one
    5-minute window, about FIVE_MINUTE_REQUESTS requests (a stated assumption, not a documented figure).
    """
    size = max(requests or LARGE_BATCH, 1)
    return {"5m": hit_rate * min(1.0, FIVE_MINUTE_REQUESTS / size), "1h": hit_rate}


def prefix_cost(requests: int, write: float, read: float, hit: float) -> float:
    """The cost of a batch's shared prefix in prefix-lengths at input price: the first request writes it,
    every later one reads it on a hit or writes it again on a miss."""
    return write + max(requests - 1, 0) * (hit * read + (1 - hit) * write)


def batch_cache_choice(requests: int | None, write_5m: float, write_1h: float, read: float,
                       hit_rate: float = BATCH_HIT_RATE) -> tuple[str, dict[str, float], str]:
    """(the cheapest choice for a batch of `requests`: "5m", "1h" or "none"; each choice's expected prefix cost
    per request, in prefix-lengths at input price; why). `requests` None: a batch of unknown, large size."""
    n = requests or LARGE_BATCH
    hits = batch_hit_rates(requests, hit_rate)
    costs = {"none": 1.0,
             "5m": prefix_cost(n, write_5m, read, hits["5m"]) / n,
             "1h": prefix_cost(n, write_1h, read, hits["1h"]) / n}
    choice = min(("none", "5m", "1h"), key=lambda k: (round(costs[k], 9), k != "none"))
    size = f"{requests} requests" if requests is not None else "a large batch"
    why = (f"{size} at the assumed {hit_rate:.0%} in-batch hit rate (5-minute entries: {hits['5m']:.0%}, about "
           f"{FIVE_MINUTE_REQUESTS} requests of a batch are assumed to fall in one 5-minute window): the shared "
           f"instructions cost {costs['none']:.2f} uncached, {costs['5m']:.2f} with the 5-minute cache and "
           f"{costs['1h']:.2f} with the 1-hour one, per request in input-price prefix lengths")
    return choice, {k: round(v, 4) for k, v in costs.items()}, why


def cache_advice(t: Tally, prices: Prices | None) -> dict:
    """Break-even hit rate of each cache choice, and which one batch mode's expected value favours."""
    if prices is None:
        return {"shared_prefix": t.prefix_tokens}
    even = {"5m": round(break_even_hit_rate(prices.write_5m, prices.read_multiplier), 3),
            "1h": round(break_even_hit_rate(prices.write_1h, prices.read_multiplier), 3)}
    advice = {"shared_prefix": t.prefix_tokens, "break_even_hit_rate": even, "assumed_batch_hit_rate": BATCH_HIT_RATE}
    if not t.prefix_tokens:
        return {**advice, "batch_choice": "none", "why": "the shared instructions are below the model's minimum cacheable length"}
    choice, costs, why = batch_cache_choice(t.requests, prices.write_5m, prices.write_1h, prices.read_multiplier)
    return {**advice, "batch_prefix_cost": costs, "batch_choice": choice, "why": why}
