"""The evidence behind plan's numbers: the output estimate and its spread, and the cache's break-even.

The output estimate comes, in order of preference, from the template's example output
(`examples/output.json`, counted with the model's tokenizer factor), its `output_tokens_estimate`, or a
share of max_tokens, each with the spread a real answer's length shows between items; `run --pilot N`
measures it instead (the "pilot" spread). A cache choice pays `write` x input for the prefix and, on each
later request, `read` x on a hit or `write` x again on a miss, so it saves money above the hit rate
(write - 1) / (write - read): 22% for the 5-minute cache, 53% for the 1-hour one at the usual multipliers.
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
    from batchpilot.prepare.plan import Tally

DEFAULT_OUTPUT_SHARE = 0.25
BATCH_HIT_RATE = 0.64  # the middle of the 30-98% in-batch hit rates the batch docs report
BATCH_HIT_RANGE = (0.30, 0.98)
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



def cache_advice(t: Tally, prices: Prices | None) -> dict:
    """Break-even hit rate of each cache choice, and which one batch mode's expected value favours."""
    if prices is None:
        return {"shared_prefix": t.prefix_tokens}
    even = {"5m": round(break_even_hit_rate(prices.write_5m, prices.read_multiplier), 3),
            "1h": round(break_even_hit_rate(prices.write_1h, prices.read_multiplier), 3)}
    if not t.prefix_tokens or t.requests < 2:
        choice, why = "none", "the shared instructions are below the model's minimum cacheable length" if not t.prefix_tokens \
            else "a single request has nothing to read back"
    elif BATCH_HIT_RATE > even["1h"]:
        choice, why = "1h", (f"at the assumed {BATCH_HIT_RATE:.0%} in-batch hit rate the 1-hour cache saves money "
                             f"(break-even {even['1h']:.0%}); a batch outlives a 5-minute entry")
    else:
        choice, why = "none", f"the assumed {BATCH_HIT_RATE:.0%} in-batch hit rate is below the 1-hour break-even {even['1h']:.0%}"
    return {"shared_prefix": t.prefix_tokens, "break_even_hit_rate": even, "assumed_batch_hit_rate": BATCH_HIT_RATE,
            "batch_choice": choice, "why": why}
