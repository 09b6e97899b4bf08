"""The direct executor's cost guard (`--max-cost`), and how far the input-token estimate is off.

Before a request is sent it holds its worst-case cost (every input token billed, the cacheable prefix as a
cache write, all of `max_tokens` as output); a request is admitted only while money spent plus money held
plus its own worst case stays within `max_cost`. After the answer the hold is dropped and the real cost,
from `usage` at standard prices, is charged. So the guard never overspends, whatever the answers turn out
to be.

The budget is the run's, not one invocation's: `billed_so_far` adds up what earlier invocations recorded
(results.jsonl) and the worst case of what they sent without recording an answer (sends.jsonl: a process
killed with requests in flight may have been billed for them), so `--max-cost` holds across resumes,
crashes and retry rounds.

The input-token estimate (characters / 4, `batchpilot.core.tokens`) is not the API's tokenizer. Answers tell us
how far off it is: the limiter reserves estimate x the mean ratio seen (pacing), and the cost guard assumes
estimate x the largest ratio seen x COST_MARGIN (x INITIAL_COST_RATIO before the first answer), so a low
estimate cannot overspend the budget.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import dumps, iter_jsonl
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
    return Prices.from_manifest(prices)


class Budget:
    """Money spent and held against `max_cost` (None: no limit), and the measured estimate ratios."""

    def __init__(self, prices: Prices, max_cost: float | None, spent_before: float = 0.0):
        self.prices = prices
        self.max_cost = max_cost
        self.spent_before = spent_before  # what earlier invocations of this run billed (or may have)
        self.spent = 0.0  # what this invocation billed
        self.held = 0.0
        self.maybe = 0.0  # worst cases of this invocation's sends that got no answer but may have been billed
        self.ratio_sum, self.ratio_count, self.ratio_max = 0.0, 0, 0.0  # counted / estimated input tokens

    def worst_case(self, params: dict, estimate: int) -> float:
        """The request's worst-case cost, its estimate scaled by how low estimates have turned out to be."""
        ratio = max(1.0, self.ratio_max) * COST_MARGIN if self.ratio_count else INITIAL_COST_RATIO
        return worst_case_cost(params, math.ceil(estimate * ratio), self.prices)

    def fits(self, worst: float) -> bool:
        """Whether a request of this worst case may be sent now."""
        return (self.max_cost is None
                or self.spent_before + self.spent + self.maybe + self.held + worst <= self.max_cost + EPSILON_USD)

    def left(self) -> float | None:
        """USD of `max_cost` the run has left (None: no limit)."""
        return None if self.max_cost is None else max(0.0, self.max_cost - self.spent_before - self.spent - self.maybe)

    def pace_tokens(self, estimate: int) -> int:
        """Input tokens to reserve at the rate limiter: the estimate corrected by the mean ratio seen."""
        mean = self.ratio_sum / self.ratio_count if self.ratio_count else 1.0
        return math.ceil(estimate * mean)

    def hold(self, worst: float) -> None:
        self.held += worst

    def release(self, worst: float) -> None:
        self.held -= worst

    def charge_unanswered(self, worst: float) -> None:
        """Count a send that may have been billed without an answer at its worst case, before it is sent again."""
        self.maybe += worst

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


SENDS_FILE = "sends.jsonl"


def billed_so_far(run_dir: Path, prices: Prices | None) -> tuple[float, float]:
    """(USD the run's recorded answers cost, USD that sends without a recorded answer may have cost).

    The first is each result record's own cost (`cost_usd`, as headless records it) or its `usage` at the
    price of the mode that bought it (batch lines at the batch discount). The second is the worst case of
    every send in `sends.jsonl` that neither a result record nor an `answered` line accounts for: a request
    in flight when the process was killed may have been billed, so it counts against `--max-cost`.
    """
    run_dir = Path(run_dir)
    recorded, answered = 0.0, set()
    for record in iter_jsonl(run_dir / "results.jsonl"):
        if record.get("send"):
            answered.add(record["send"])
        result = record.get("result") if isinstance(record.get("result"), dict) else {}
        own = result.get("cost_usd", record.get("cost_usd"))
        if isinstance(own, (int, float)) and not isinstance(own, bool):
            recorded += float(own)
            continue
        message = result.get("message") if isinstance(result.get("message"), dict) else {}
        usage = message.get("usage") if isinstance(message.get("usage"), dict) else None
        if usage and prices is not None:
            recorded += cost_usd(prices, usage, batch=record.get("mode") == "batch")
    unanswered: dict[str, float] = {}
    for line in iter_jsonl(run_dir / SENDS_FILE):
        send = line.get("send")
        if not isinstance(send, str):
            continue
        if line.get("answered"):
            answered.add(send)
        elif isinstance(line.get("worst_usd"), (int, float)):
            unanswered[send] = float(line["worst_usd"])
    return recorded, sum(usd for send, usd in unanswered.items() if send not in answered)


class SendLog:
    """`sends.jsonl`, appended with one write(2) per line and no fsync: a line is in the kernel before the
    request it names goes out, so it survives a kill of this process (what the budget must survive) at the
    cost of a system call, not a disk flush in front of every request. It is fsynced when closed; a machine
    crash may lose the last lines, and with them the worst case of the requests then in flight."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def write(self, line: dict) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self.fd, (dumps(line) + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = None
