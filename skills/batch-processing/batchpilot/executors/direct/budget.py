"""The direct executor's cost guard (`--max-cost`), and how far the input-token estimate is off.

Before a request is sent it holds its worst-case cost (every input token billed, the cacheable prefix as a
cache write, all of `max_tokens` as output); a request is admitted only while money spent plus money held
plus its own worst case stays within `max_cost`. After the answer the hold is dropped and the real cost,
from `usage` at standard prices, is charged. So the guard never overspends, whatever the answers turn out
to be.

The input-token estimate (characters / 4, `batchpilot.core.tokens`) is not the API's tokenizer. Answers tell us
how far off it is: the limiter reserves estimate x the mean ratio seen (pacing), and the cost guard assumes
estimate x the largest ratio seen x COST_MARGIN (x INITIAL_COST_RATIO before the first answer), so a low
estimate cannot overspend the budget.
"""

from __future__ import annotations

import math
from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.models import CACHE_WRITE_1H, CACHE_WRITE_5M, Prices, cost_usd
from batchpilot.core.tokens import request_segments

COST_MARGIN = 1.1
INITIAL_COST_RATIO = 1.5
EPSILON_USD = 1e-12  # float sums of many small costs must not refuse a request that exactly fits


def worst_case_cost(params: dict, input_tokens: int, prices: Prices) -> float:
    """USD this request can cost at most (standard price): every input token billed, the cacheable prefix as
    a cache write, and all of `max_tokens` as output."""
    prefix, multiplier, running = 0, 1.0, 0
    for segment in request_segments(params):
        running += segment.tokens
        if segment.cache_ttl:
            prefix = running
            multiplier = max(multiplier, CACHE_WRITE_1H if segment.cache_ttl == "1h" else CACHE_WRITE_5M)
    prefix = min(prefix, input_tokens)
    billed_input = (input_tokens - prefix) + prefix * multiplier
    return (billed_input * prices.input + int(params.get("max_tokens") or 0) * prices.output) / 1_000_000


def run_prices(manifest: dict, run_dir: Path) -> Prices:
    """The run's prices from run.json; an unknown model's missing price fails closed."""
    prices = manifest.get("prices")
    if not isinstance(prices, dict) or prices.get("input_per_mtok") is None or prices.get("output_per_mtok") is None:
        raise BatchpilotError(
            f"{run_dir / 'run.json'}: no price for model {manifest.get('model')!r}, so the cost cannot be bounded",
            "prepare the run again with --price-in and --price-out (USD per million tokens) for this model",
        )
    return Prices(float(prices["input_per_mtok"]), float(prices["output_per_mtok"]),
                  float(prices.get("read_multiplier") or 0.1))


class Budget:
    """Money spent and held against `max_cost` (None: no limit), and the measured estimate ratios."""

    def __init__(self, prices: Prices, max_cost: float | None):
        self.prices = prices
        self.max_cost = max_cost
        self.spent = 0.0
        self.held = 0.0
        self.ratio_sum, self.ratio_count, self.ratio_max = 0.0, 0, 0.0  # counted / estimated input tokens

    def worst_case(self, params: dict, estimate: int) -> float:
        """The request's worst-case cost, its estimate scaled by how low estimates have turned out to be."""
        ratio = max(1.0, self.ratio_max) * COST_MARGIN if self.ratio_count else INITIAL_COST_RATIO
        return worst_case_cost(params, math.ceil(estimate * ratio), self.prices)

    def fits(self, worst: float) -> bool:
        """Whether a request of this worst case may be sent now."""
        return self.max_cost is None or self.spent + self.held + worst <= self.max_cost + EPSILON_USD

    def pace_tokens(self, estimate: int) -> int:
        """Input tokens to reserve at the rate limiter: the estimate corrected by the mean ratio seen."""
        mean = self.ratio_sum / self.ratio_count if self.ratio_count else 1.0
        return math.ceil(estimate * mean)

    def hold(self, worst: float) -> None:
        self.held += worst

    def release(self, worst: float) -> None:
        self.held -= worst

    def charge(self, usage: dict, estimate: int) -> None:
        """Charge one answer's real cost and learn from its `usage` how far off `estimate` was."""
        self.spent += cost_usd(self.prices, usage, batch=False)
        counted = sum(int(usage.get(k) or 0) for k in
                      ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        if estimate:
            ratio = counted / estimate
            self.ratio_sum += ratio
            self.ratio_count += 1
            self.ratio_max = max(self.ratio_max, ratio)
