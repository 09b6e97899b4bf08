"""The estimate a run is prepared with: what `plan` would print for the run's mode, kept in run.json.

`prepare` (and `run`, `demo`) tallies the requests as it writes them, with plan's output estimate (the
template's example output, its stated guess, or a share of max_tokens) and plan's cost formulas, under the
cache the requests finally carry. run.json's `estimate` then lets the report set the bill against the figure
the user decided on, for a run with or without a pilot. Modes billed to a Claude Code plan (agents,
headless) and models without a price get no dollar estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchpilot.core.models import Prices
from batchpilot.prepare.estimates import OutputEstimate, output_estimate
from batchpilot.prepare.costs import Tally, mode_costs

PRICED_MODES = ("batch", "direct")


@dataclass
class RunEstimate:
    mode: str
    prices: Prices | None
    output: OutputEstimate
    tally: Tally = field(default_factory=Tally)

    @classmethod
    def for_job(cls, job: Any) -> "RunEstimate":
        """For a `prepare.job.Job`; a long-prompt tier is tallied apart, as plan does."""
        return cls(job.mode, job.prices, output_estimate(job.template, job.model, job.max_tokens),
                   Tally.for_prices(job.prices))

    def add(self, params: dict, item: Any = None) -> None:
        self.tally.add(params, self.output.tokens, item=item)

    def as_manifest(self, cache_ttl: str | None) -> dict | None:
        """run.json's `estimate`: the expected cost and range of the row the run will be billed as
        (`batch_cached` when its requests carry `cache_ttl`), and where the output figure came from."""
        if self.prices is None or self.mode not in PRICED_MODES or not self.tally.requests:
            return None
        self.tally.spread = self.output.spread
        if self.mode == "batch":
            modes = mode_costs(self.tally, self.prices, cache_ttl)
        else:  # direct: its one cache write at the price of the cache its requests carry
            modes = mode_costs(self.tally, self.prices, "auto", cache_ttl or "5m")
        key = f"{self.mode}_cached" if cache_ttl and self.tally.prefix_tokens else self.mode
        row = modes[key]
        if row.cost_usd is None or row.cost_range is None:
            return None
        return {"mode": key, "cost_usd": round(row.cost_usd, 4),
                "cost_range_usd": [round(row.cost_range[0], 4), round(row.cost_range[1], 4)],
                "output_source": self.output.describe(),
                "input_tokens": self.tally.input_tokens, "output_tokens": self.tally.output_tokens}
