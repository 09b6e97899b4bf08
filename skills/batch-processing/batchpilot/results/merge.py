"""Merge: all result records of a run → one validated record per item, in input order, plus a summary.

Every executor appends the same records to `results.jsonl`, one per attempt and in any order, so merge
never cares which executor ran. It writes `merged.jsonl` (one line per item of `items.jsonl`, same order),
`summary.json`, and on request `merged.csv` / `merged.md` (`batchpilot.report.exports`).

Algorithm — two streaming passes, memory bounded by an index of ids:

1. `items.jsonl` → `{custom_id: position}`, and per position a few numbers in typed arrays: the ordering
   key of the latest succeeded record, of the latest record of any kind, the attempt count, the summed
   usage and cost of billed (succeeded) attempts. Measured: about 160 bytes an item in all, whatever the
   size of the answers or the number of attempts (bench/bench_merge.py: +150 MB for 1,000,000 items and
   1.2 GB of results).
2. One pass over `results.jsonl` in binary mode, tracking byte offsets. A record's key is
   `attempt << 40 | offset`: a higher attempt wins, and within an attempt the later line. Nothing but
   those numbers is kept; items that succeeded more than once also keep their other success keys in a side
   table (rare: only duplicates pay).
3. `items.jsonl` again, in order: for each item, seek to its latest success, extract the JSON by the
   run's output style and validate it; if it fails, the item's earlier successes are tried, latest
   first (so a later bad answer never hides an earlier good one). With no success, the latest attempt
   decides the status. Each merged line is written as it is made.

The seeks in pass 3 read back only one line per item (the files are usually in the page cache after pass
2). An external sort would also bound memory but rewrites every result to disk twice; the index is simpler
and faster for the item counts a batch job has (≤ 100,000 per batch, a few million per run).

Statuses: `ok` · `invalid` (answered, but no usable JSON or it breaks the schema) · `errored` ·
`expired` · `canceled` · `missing` (no result record yet).
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from batchpilot.core import crash
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import atomic_write_json, dumps, iter_jsonl
from batchpilot.core.models import Prices
from batchpilot.rundir.journal import journal
from batchpilot.rundir.manifest import open_run
from batchpilot.results.judge import STATUS_ERRORS, STATUSES, api_error, judge_success
from batchpilot.results.summary import USAGE_KEYS, ModeTotals, build_summary, parse_at, run_prices
from batchpilot.results.validate import OutputValidator, locate_schema

FAILURE_LIST_LIMIT = 200
OFFSET_BITS = 40
OFFSET_MASK = (1 << OFFSET_BITS) - 1
MAX_ATTEMPT = (1 << 22) - 1
class _Ledger:
    """Per-item numbers gathered in the results pass (typed arrays: no Python object per item)."""

    def __init__(self, n: int):
        self.succ = array("q", [-1]) * n
        self.last = array("q", [-1]) * n
        self.attempts = array("l", [0]) * n
        self.tokens = [array("q", [0]) * n for _ in USAGE_KEYS]
        self.cost = array("d", [0.0]) * n  # NaN: a billed attempt without usage
        self.other_successes: dict[int, list[int]] = {}


class _Scan:
    """What the results pass learned about the run as a whole."""

    def __init__(self) -> None:
        self.records = self.unknown = self.malformed = 0
        self.modes: dict[str, ModeTotals] = {}
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None


def _index_items(run_dir: Path) -> dict[str, int]:
    index: dict[str, int] = {}
    # items.jsonl is written whole by prepare, never appended: a cut last line is damage, not a torn append.
    for rec in iter_jsonl(run_dir / "items.jsonl", tolerate_torn_tail=False):
        cid = rec.get("custom_id")
        if not isinstance(cid, str) or cid in index:
            raise BatchpilotError(f"items.jsonl line {len(index) + 1}: custom_id {cid!r} is missing or repeated",
                                  "the run directory was edited or damaged; prepare it again into a new directory")
        index[cid] = len(index)
    if not index:
        raise BatchpilotError(f"{run_dir / 'items.jsonl'} is missing or empty", "prepare the run again")
    return index


def _scan_results(path: Path, index: dict[str, int], ledger: _Ledger, prices: Prices | None, default_mode: str) -> _Scan:
    scan = _Scan()
    if not path.exists():
        return scan
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
    return scan


def _bill(result: dict, pos: int, mode: str, totals: ModeTotals, ledger: _Ledger, prices: Prices | None) -> None:
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
    from batchpilot.core.models import cost_usd

    cost = cost_usd(prices, usage, batch=mode == "batch")
    list_cost = cost_usd(prices, usage, batch=False)
    ledger.cost[pos] += cost
    totals.cost += cost
    totals.list_cost += list_cost
    totals.standard_cost += (sum(counts[i] for i in (0, 2, 3)) * prices.input + counts[1] * prices.output) / 1_000_000


def _outcome(pos: int, ledger: _Ledger, fh: Any, style: str, validator: OutputValidator) -> tuple[str, dict | None, dict | None, dict | None]:
    """(status, output, error, the record that decided) for the item at `pos`."""

    def read(key: int) -> dict:
        fh.seek(key & OFFSET_MASK)
        return json.loads(fh.readline())

    if ledger.succ[pos] >= 0:
        keys = [ledger.succ[pos]] + sorted(ledger.other_successes.get(pos, ()), reverse=True)
        verdict: tuple[str, Any, Any, Any] | None = None
        for key in keys:
            record = read(key)
            output, error = judge_success(record, style, validator)
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


def merge_run(run_dir: Path, formats: tuple[str, ...] | list[str] = ("jsonl",), progress: Any = None) -> dict:
    """Write merged.jsonl (always), summary.json and the extra `formats` (csv, md); return the summary."""
    from batchpilot.report.exports import EXPORTERS
    from batchpilot.core.files import atomic_stream

    run_dir = Path(run_dir)
    unknown_formats = [f for f in formats if f != "jsonl" and f not in EXPORTERS]
    if unknown_formats:
        raise BatchpilotError(f"unknown format {unknown_formats[0]!r}", "formats are jsonl, csv and md")
    manifest = open_run(run_dir)
    style = str(manifest.get("output_style") or "json_schema")
    schema, schema_source = locate_schema(run_dir, manifest)
    validator = OutputValidator(schema, schema_source)
    prices = run_prices(manifest)
    default_mode = str(manifest.get("mode") or "batch")
    if progress:
        progress.stage(f"merging {run_dir} ...")
    index = _index_items(run_dir)
    if isinstance(manifest.get("item_count"), int) and manifest["item_count"] != len(index):
        raise BatchpilotError(f"{run_dir / 'items.jsonl'} holds {len(index)} items, run.json says {manifest['item_count']}",
                              "the run directory was edited or damaged; restore items.jsonl or prepare the run again")
    ledger = _Ledger(len(index))
    scan = _scan_results(run_dir / "results.jsonl", index, ledger, prices, default_mode)
    del index  # pass 3 walks items.jsonl in order instead

    counts: Counter = Counter({s: 0 for s in STATUSES})
    error_types: Counter = Counter()
    failures: list[dict] = []
    model = manifest.get("model")
    results_path = run_dir / "results.jsonl"
    reader = open(results_path, "rb") if results_path.exists() else nullcontext(None)  # no results: all missing
    with atomic_stream(run_dir / "merged.jsonl") as out, reader as fh:
        for pos, item in enumerate(iter_jsonl(run_dir / "items.jsonl", tolerate_torn_tail=False)):
            status, output, error, record = _outcome(pos, ledger, fh, style, validator)
            message = (record or {}).get("result", {}).get("message")
            cost = ledger.cost[pos]
            merged = {
                "custom_id": item["custom_id"],
                "status": status,
                "output": output,
                "error": error,
                "attempts": ledger.attempts[pos],
                "mode": (record or {}).get("mode") or (default_mode if record else None),
                "model": (message.get("model") if isinstance(message, dict) else None) or model,
                "usage": {k: column[pos] for k, column in zip(USAGE_KEYS, ledger.tokens)},
                "cost_usd": None if prices is None or math.isnan(cost) else round(cost, 8),
                "source": item.get("source"),
            }
            out.write(dumps(merged) + "\n")
            if pos == 1:
                crash.point("merge-mid-write")
            counts[status] += 1
            if error is not None:
                error_types[error["type"]] += 1
                if len(failures) < FAILURE_LIST_LIMIT:
                    failures.append({"custom_id": merged["custom_id"], "status": status, "type": error["type"],
                                     "message": error["message"], "source": merged["source"]})
            if progress and pos % 1000 == 0:
                progress.update(pos, len(ledger.attempts), "items")
    if progress:
        progress.done()

    crash.point("merge-before-summary")
    files = {"merged.jsonl": str(run_dir / "merged.jsonl")}
    for fmt in formats:
        if fmt in EXPORTERS:
            name, write = EXPORTERS[fmt]
            write(run_dir / "merged.jsonl", run_dir / name, schema)
            files[name] = str(run_dir / name)
    summary = build_summary(run_dir, manifest, schema_source, counts, error_types, failures, scan, prices, files)
    atomic_write_json(run_dir / "summary.json", summary)
    journal(run_dir, "merged", counts={k: v for k, v in counts.items() if v}, unknown_results=scan.unknown)
    return summary


