"""The reports' "Estimate vs billed" section: what the pilot measured, the whole job it extrapolated, the bill.

`estimate_section(manifest, summary, pilot)` computes the rows once, as (label, text) pairs already
formatted, so report.md and report.html show the same figures (each renderer only escapes them). Two
estimates can be set against the bill: run.json's `estimate`, what plan would print for the job, recorded
when it was prepared (`prepare.run_estimate`), and after `run --pilot` the pilot's extrapolation
(`pilot.json`). Both rest on run.json's cache choice, which the section shows first. A run with neither
(an older run, an unpriced model, agents or headless mode) has no section.

The whole-job estimate shown is the extrapolation row of the mode the run continued in: pilot.json's
`mode_key` when it records one; for an older pilot.json, run.json's mode with `_cached` when that row exists
and run.json's `cache` says the requests are cached, else the plain mode. Until every item has a result
(a run stopped after its pilot), the bill is labelled "so far".
"""

from __future__ import annotations

import math
from typing import Any

TITLE = "Estimate vs billed"
# The rows run.json's `estimate` can name (`prepare.run_estimate`); anything else shows as "unknown".
PREPARED_MODES = ("batch", "batch_cached", "direct", "direct_cached")
# No figure in these files (dollars, items, shares) comes near this: a larger one is a damaged file.
PLAUSIBLE_MAX = 1e12
SMALLEST_COST = 0.00005  # below it a cost prints as $0.0000, and a ratio to it means nothing


def money(value: Any) -> str:
    """Dollars to four places, as the rest of the reports print them."""
    return "unknown (no price for this model)" if value is None else f"${value:,.4f}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "unknown"


def _number(value: Any) -> float | None:
    """`value` if it is a plausible figure (a finite number from 0 to PLAUSIBLE_MAX), else None ("unknown"):
    a hand-edited run.json, pilot.json or summary.json must neither stop the report nor print nonsense."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)  # an integer too large for a float is a damaged file, not a crash
    except OverflowError:
        return None
    return value if math.isfinite(number) and 0 <= number <= PLAUSIBLE_MAX else None


def _obj(value: Any) -> dict:
    """`value` if it is an object, else {}: a damaged pilot.json shows "unknown", it does not stop the report."""
    return value if isinstance(value, dict) else {}


def continued_mode(manifest: dict, pilot: dict) -> str | None:
    """The extrapolation row describing the mode the run continued in (see the module docstring)."""
    if isinstance(pilot.get("mode_key"), str):
        return pilot["mode_key"]
    mode = manifest.get("mode")
    if not isinstance(mode, str):
        return None
    rows = _obj(_obj(pilot.get("figures")).get("extrapolated"))
    cached = (_obj(manifest.get("cache")).get("ttl") or "none") != "none"  # run.json's record of the choice
    return f"{mode}_cached" if cached and f"{mode}_cached" in rows else mode


def _range_text(row: dict) -> str:
    bounds = row.get("cost_range_usd")
    low, high = (_number(b) for b in bounds) if isinstance(bounds, list) and len(bounds) == 2 else (None, None)
    return f" ({money(low)}–{money(high)})" if low is not None and high is not None else ""


def _bill_rows(summary: dict, estimate: float | None) -> list[tuple[str, str]]:
    billed = _number(summary.get("cost_usd"))
    missing = _number(_obj(summary.get("counts")).get("missing")) or 0
    if missing:  # stopped after the pilot (or items lost): the bill is not yet the whole job's
        rows = [(f"billed so far ({missing:,.0f} of {_count(summary.get('items'))} items without a result)", money(billed))]
    else:
        rows = [("billed, whole run", money(billed))]
    if billed is not None and estimate is not None and estimate >= SMALLEST_COST:
        rows.append(("billed so far / estimate" if missing else "billed / estimate", f"{billed / estimate:.2f}"))
    return rows


def _prepared_row(manifest: dict) -> tuple[tuple[str, str], float | None, str] | None:
    """The row of run.json's `estimate` (plan's figure when the run was prepared), its cost and its source."""
    before = _obj(manifest.get("estimate"))
    if not before:
        return None
    cost = _number(before.get("cost_usd"))
    mode = before.get("mode") if before.get("mode") in PREPARED_MODES else "unknown"
    text = "unknown" if cost is None else money(cost) + _range_text(before)  # the run had a price: a damaged file
    source = before.get("output_source")
    return (f"estimate when prepared, {mode} (range)", text), cost, source if isinstance(source, str) else ""


def _cache_row(manifest: dict) -> list[tuple[str, str]]:
    """run.json's cache choice (TTL and why), the one the receipts printed, as the estimate assumed it."""
    cache = _obj(manifest.get("cache"))
    ttl, why = cache.get("ttl"), cache.get("why")
    if not isinstance(ttl, str):
        return []
    return [("prompt cache for the shared instructions", f"{ttl}: {why}" if isinstance(why, str) and why else ttl)]


def estimate_section(manifest: dict, summary: dict, pilot: dict | None) -> dict | None:
    """{"title", "rows": [(label, text)], "note"} for a run with an estimate: run.json's `estimate` (plan's
    figure at prepare) and/or a pilot's extrapolation (pilot.json's content); None when it has neither."""
    prepared = _prepared_row(manifest)
    if not isinstance(pilot, dict) or not isinstance(pilot.get("figures"), dict):
        if prepared is None:
            return None  # an older run, an unpriced model, or a mode billed to a Claude Code plan
        row, cost, source = prepared
        note = (f"The estimate is what plan prints for this job{', from ' + source if source else ''}. The bill is "
                "the run's cost in summary.json: every attempt, retries included.")
        return {"title": TITLE, "rows": [*_cache_row(manifest), row, *_bill_rows(summary, cost)], "note": note}
    figures = pilot["figures"]
    tokens, cache = _obj(figures.get("billed_tokens")), _obj(figures.get("cache"))
    share = _number(figures.get("invalid_share"))
    rows = [
        ("pilot items answered", f"{_count(figures.get('answered'))} of {_count(figures.get('items'))}"),
        ("pilot billed cost", money(_number(figures.get("billed_cost_usd")))),
        ("pilot tokens in / out", f"{_count(tokens.get('input_tokens'))} / {_count(tokens.get('output_tokens'))}"),
        ("pilot cache read / written", f"{_count(cache.get('read'))} / {_count(cache.get('written'))}"),
        ("pilot invalid share", f"{100 * share:.1f}%" if share is not None else "unknown"),
    ]
    key = continued_mode(manifest, pilot)
    extrapolated = _obj(figures.get("extrapolated"))
    row = _obj(extrapolated.get(key)) if key else {}
    estimate = _number(row.get("cost_usd"))
    rows += _cache_row(manifest)
    if prepared is not None:
        rows.append(prepared[0])
    if figures.get("answered") == 0:  # nothing measured, nothing extrapolated
        rows.append(("estimate after the pilot", "none (no pilot item was answered)"))
    else:  # no row at all when the model has no price (pilot.py extrapolates costs only)
        rows.append((f"estimate after the pilot, {key} (range)", money(estimate) + _range_text(row)))
    rows += _bill_rows(summary, estimate)
    note = ("The estimate covers the whole job: what the pilot cost plus the rest extrapolated from the pilot's "
            "measured tokens. The bill is the run's cost in summary.json: every attempt, retries included.")
    return {"title": TITLE, "rows": rows, "note": note}
