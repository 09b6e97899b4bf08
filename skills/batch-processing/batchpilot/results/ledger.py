"""The results ledger: a run's result records reduced to a few numbers per item, and an item's outcome from them.

Merge and repair (`retry --only invalid`) both read results.jsonl through this module, so repair re-asks
precisely the items merge calls `invalid`:

* `index_items` maps each custom_id of `items.jsonl` to its position;
* `scan_results` makes one pass over `results.jsonl` in binary mode, tracking byte offsets, and fills a
  `Ledger` of typed arrays (no Python object per item): per position the key of the latest succeeded
  record, of the latest record of any kind, the attempt count, and the summed usage and cost of billed
  (succeeded) attempts. A record's key is `attempt << OFFSET_BITS | offset`: a higher attempt wins, and
  within an attempt the later line; `key & OFFSET_MASK` is where the line starts. Items that succeeded more
  than once also keep their other success keys in a side table (rare: only duplicates pay);
* `outcome` seeks back to an item's records and decides its status: its latest success, extracted and
  validated (`judge.judge_success`), else its earlier successes, latest first (so a later bad answer never
  hides an earlier good one); with no success, the latest attempt decides.
"""

from __future__ import annotations

import json
import math
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import iter_jsonl
from batchpilot.core.models import USAGE_KEYS, Prices, cost_usd
from batchpilot.results.judge import STATUS_ERRORS, RunView, api_error, judge_success
from batchpilot.results.summary import ModeTotals, parse_at

OFFSET_BITS = 40
OFFSET_MASK = (1 << OFFSET_BITS) - 1
MAX_ATTEMPT = (1 << 22) - 1


class Ledger:
    """Per-item numbers gathered in the results pass (typed arrays: no Python object per item)."""

    def __init__(self, n: int):
        self.succ = array("q", [-1]) * n
        self.last = array("q", [-1]) * n
        self.attempts = array("l", [0]) * n
        self.tokens = [array("q", [0]) * n for _ in USAGE_KEYS]
        self.cost = array("d", [0.0]) * n  # NaN: a billed attempt without usage
        self.other_successes: dict[int, list[int]] = {}


class Scan:
    """What the results pass learned about the run as a whole."""

    def __init__(self) -> None:
        self.records = self.unknown = self.malformed = 0
        self.modes: dict[str, ModeTotals] = {}
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None


def index_items(run_dir: Path) -> dict[str, int]:
    """`{custom_id: position}` of the run's items.jsonl; an error when an id is missing or repeated."""
    index: dict[str, int] = {}
    # items.jsonl is written whole by prepare, never appended: a cut last line is damage, not a torn append.
    for rec in iter_jsonl(run_dir / "items.jsonl", tolerate_torn_tail=False, require=("custom_id",)):
        cid = rec.get("custom_id")
        if not isinstance(cid, str) or cid in index:
            raise BatchpilotError(f"items.jsonl line {len(index) + 1}: custom_id {cid!r} is missing or repeated",
                                  "the run directory was edited or damaged; prepare it again into a new directory")
        index[cid] = len(index)
    if not index:
        raise BatchpilotError(f"{run_dir / 'items.jsonl'} is missing or empty", "prepare the run again")
    return index


def scan_results(path: Path, index: dict[str, int], prices: Prices | None, default_mode: str) -> tuple[Ledger, Scan]:
    """One pass over results.jsonl: the items' ledger (positions from `index`) and the run-wide figures.

    `prices` None skips the cost; `default_mode` is the mode of records that name none."""
    ledger, scan = Ledger(len(index)), Scan()
    if not path.exists():
        return ledger, scan
    offset = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if not line.endswith(b"\n"):
                    break  # a torn last line: the append was killed before it was reported written
                raise BatchpilotError(f"results.jsonl line {number}: not valid JSON",
                                      "the file was edited or damaged; restore it, or remove that line and "
                                      "re-fetch or retry the items it held") from None
            result = rec.get("result") if isinstance(rec, dict) else None
            if not isinstance(result, dict) or not isinstance(rec.get("custom_id"), str):
                scan.malformed += 1
                continue
            pos = index.get(rec["custom_id"])
            if pos is None:
                scan.unknown += 1
                continue
            scan.records += 1
            attempt = rec.get("attempt")
            attempt = min(attempt, MAX_ATTEMPT) if type(attempt) is int and attempt > 0 else 0
            key = attempt << OFFSET_BITS | start
            mode = rec.get("mode") if isinstance(rec.get("mode"), str) else default_mode
            totals = scan.modes.get(mode) or scan.modes.setdefault(mode, ModeTotals())
            totals.attempts += 1
            ledger.attempts[pos] += 1
            if key > ledger.last[pos]:
                ledger.last[pos] = key
            at = parse_at(rec.get("at"))
            if at is not None:
                scan.first_at = at if scan.first_at is None or at < scan.first_at else scan.first_at
                scan.last_at = at if scan.last_at is None or at > scan.last_at else scan.last_at
            if result.get("type") != "succeeded":
                continue
            _bill(result, pos, mode, totals, ledger, prices)
            if ledger.succ[pos] >= 0:
                older = min(key, ledger.succ[pos])
                ledger.other_successes.setdefault(pos, []).append(older)
            ledger.succ[pos] = max(key, ledger.succ[pos])
    return ledger, scan


def _bill(result: dict, pos: int, mode: str, totals: ModeTotals, ledger: Ledger, prices: Prices | None) -> None:
    """Add a succeeded attempt's usage and cost (the only billed kind) to its item and its mode."""
    totals.billed += 1
    message = result.get("message")
    usage = message.get("usage") if isinstance(message, dict) else None
    usage = usage if isinstance(usage, dict) else result.get("usage")
    if not isinstance(usage, dict):
        totals.usage_unknown += 1
        ledger.cost[pos] = math.nan
        return
    counts = [usage.get(k) if type(usage.get(k)) is int else 0 for k in USAGE_KEYS]
    for k, n, column in zip(USAGE_KEYS, counts, ledger.tokens):
        column[pos] += n
        totals.usage[k] += n
    if prices is None:
        return
    cost = cost_usd(prices, usage, batch=mode == "batch")
    list_cost = cost_usd(prices, usage, batch=False)
    ledger.cost[pos] += cost
    totals.cost += cost
    totals.list_cost += list_cost
    totals.standard_cost += (sum(counts[i] for i in (0, 2, 3)) * prices.input + counts[1] * prices.output) / 1_000_000


def outcome(pos: int, ledger: Ledger, fh: Any, view: RunView) -> tuple[str, dict | None, dict | None, dict | None]:
    """(status, output, error, the record that decided) for the item at `pos`; `fh` is results.jsonl, binary."""

    def read(key: int) -> dict:
        fh.seek(key & OFFSET_MASK)
        return json.loads(fh.readline())

    if ledger.succ[pos] >= 0:
        keys = [ledger.succ[pos]] + sorted(ledger.other_successes.get(pos, ()), reverse=True)
        verdict: tuple[str, Any, Any, Any] | None = None
        for key in keys:
            record = read(key)
            output, error = judge_success(record, view.style, view.validator)
            if error is None:
                return "ok", output, None, record
            verdict = verdict or ("invalid", None, error, record)
        return verdict  # type: ignore[return-value]
    if ledger.last[pos] < 0:
        return "missing", None, {"type": "missing", "message": STATUS_ERRORS["missing"]}, None
    record = read(ledger.last[pos])
    result = record.get("result") or {}
    kind = result.get("type")
    if kind == "errored":
        return "errored", None, api_error(result), record
    if kind in ("expired", "canceled"):
        return kind, None, {"type": kind, "message": STATUS_ERRORS[kind]}, record
    return "errored", None, {"type": "unknown_result", "message": f"unknown result type {kind!r}; re-fetch or retry the item"}, record
