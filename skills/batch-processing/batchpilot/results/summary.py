"""Summary: the run-level figures of a merge — counts, tokens, cost per mode, savings, duration, failures.

Costs follow `batchpilot.core.models.cost_usd` (batch discount when a record's mode is batch, cache write and read
multipliers). Three totals make the savings visible: `cost_usd` (what was billed), `cost_without_batch_usd`
(the same tokens at standard rates, caching included) and `standard_cost_usd` (no batch, no caching: every
input token at the base input price).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batchpilot.core.models import USAGE_KEYS, Prices, prices_for
from batchpilot.core.clock import now_iso
from batchpilot.core.shell import next_command


def run_prices(manifest: dict) -> Prices | None:
    """The prices the run was planned with (explicit ones included), else the model table's; None if unknown."""
    p = manifest.get("prices")
    if isinstance(p, dict) and p.get("input_per_mtok") is not None and p.get("output_per_mtok") is not None:
        return Prices.from_manifest(p)
    return prices_for(str(manifest.get("model", "")))


def parse_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class ModeTotals:
    """Attempts, tokens and money for one executor mode."""

    def __init__(self) -> None:
        self.attempts = self.billed = self.usage_unknown = 0
        self.usage = dict.fromkeys(USAGE_KEYS, 0)
        self.cost = self.list_cost = self.standard_cost = 0.0

    def as_dict(self, priced: bool) -> dict:
        money = (lambda x: round(x, 6)) if priced else (lambda x: None)
        return {"attempts": self.attempts, "billed_attempts": self.billed, "usage_unknown": self.usage_unknown,
                "usage": dict(self.usage), "cost_usd": money(self.cost),
                "cost_without_batch_usd": money(self.list_cost), "standard_cost_usd": money(self.standard_cost)}


def build_summary(run_dir: Path, manifest: dict, schema_source: str, counts: Counter, error_types: Counter,
             failures: list, scan: Any, prices: Prices | None, files: dict, emulated: bool = False) -> dict:
    """summary.json's content; `emulated` marks a rehearsal on the local emulator (its outputs are placeholders)."""
    priced = prices is not None
    usage = dict.fromkeys(USAGE_KEYS, 0)
    cost = list_cost = standard = 0.0
    for totals in scan.modes.values():
        for k in USAGE_KEYS:
            usage[k] += totals.usage[k]
        cost, list_cost, standard = cost + totals.cost, list_cost + totals.list_cost, standard + totals.standard_cost
    unknown_usage = sum(t.usage_unknown for t in scan.modes.values())
    created = parse_at(manifest.get("created_at"))
    items = sum(counts.values())
    failed = items - counts["ok"]
    summary_files = dict(files, **{"summary.json": str(run_dir / "summary.json")})
    money = (lambda x: round(x, 6)) if priced else (lambda x: None)
    return {
        "run": str(run_dir),
        "emulated": emulated,
        "merged_at": now_iso(),
        "template": manifest.get("template", {}).get("name"),
        "model": manifest.get("model"),
        "output_style": manifest.get("output_style"),
        "schema_source": schema_source,
        "items": items,
        "counts": dict(counts),
        "error_types": dict(error_types.most_common()),
        "result_records": scan.records,
        "unknown_results": scan.unknown,
        "malformed_results": scan.malformed,
        "usage": usage,
        "usage_unknown_attempts": unknown_usage,
        "cost_usd": money(cost),
        "cost_without_batch_usd": money(list_cost),
        "standard_cost_usd": money(standard),
        "savings_usd": {"batch": money(list_cost - cost), "caching": money(standard - list_cost)},
        "by_mode": {mode: t.as_dict(priced) for mode, t in sorted(scan.modes.items())},
        "duration": {
            "created_at": manifest.get("created_at"),
            "first_result_at": scan.first_at.isoformat().replace("+00:00", "Z") if scan.first_at else None,
            "last_result_at": scan.last_at.isoformat().replace("+00:00", "Z") if scan.last_at else None,
            "seconds": round((scan.last_at - created).total_seconds(), 3) if created and scan.last_at else None,
        },
        "failures": failures,
        "failures_listed": len(failures),
        "failures_total": failed,
        "files": summary_files,
        "next": suggest_next(run_dir, counts),
    }


def suggest_next(run_dir: Path, counts: Counter | dict) -> str:
    """`batchpilot retry RUN` when items failed; else `batchpilot report RUN`."""
    failed = sum(n for status, n in counts.items() if status != "ok")
    if failed:
        return next_command("retry", run_dir)
    return next_command("report", run_dir)
