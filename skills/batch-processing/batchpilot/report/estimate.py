"""The reports' "Estimate vs billed" section: what the pilot measured, the whole job it extrapolated, the bill.

`estimate_section(manifest, summary, pilot)` computes the rows once, as (label, text) pairs already
formatted, so report.md and report.html show the same figures (each renderer only escapes them). It returns
None when the run has no estimate to compare with: only `run --pilot` records one (`pilot.json`); run.json
keeps no estimate from `plan`, so a run without a pilot has no such section.

The whole-job estimate shown is the extrapolation row of the mode the run continued in: pilot.json's
`mode_key` when it records one; for an older pilot.json, run.json's mode with `_cached` when that row exists
and run.json's `cache` says the requests are cached, else the plain mode. Until every item has a result
(a run stopped after its pilot), the bill is labelled "so far".
"""

from __future__ import annotations

from typing import Any

TITLE = "Estimate vs billed"


def money(value: Any) -> str:
    """Dollars to four places, as the rest of the reports print them."""
    return "unknown (no price for this model)" if value is None else f"${value:,.4f}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "unknown"


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


def estimate_section(manifest: dict, summary: dict, pilot: dict | None) -> dict | None:
    """{"title", "rows": [(label, text)], "note"} for a run with a pilot (pilot.json's content), else None."""
    if not isinstance(pilot, dict) or not isinstance(pilot.get("figures"), dict):
        return None  # no pilot, or one not measured yet: nothing was estimated from evidence
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
    if figures.get("answered") == 0:  # nothing measured, nothing extrapolated
        rows.append(("estimate after the pilot", "none (no pilot item was answered)"))
    else:  # no row at all when the model has no price (pilot.py extrapolates costs only)
        bounds = row.get("cost_range_usd")
        low, high = (_number(b) for b in bounds) if isinstance(bounds, list) and len(bounds) == 2 else (None, None)
        spread = f" ({money(low)}–{money(high)})" if low is not None and high is not None else ""
        rows.append((f"estimate after the pilot, {key} (range)", money(estimate) + spread))
    billed = _number(summary.get("cost_usd"))
    missing = _number(_obj(summary.get("counts")).get("missing")) or 0
    if missing:  # stopped after the pilot (or items lost): the bill is not yet the whole job's
        rows.append((f"billed so far ({missing:,.0f} of {_count(summary.get('items'))} items without a result)", money(billed)))
    else:
        rows.append(("billed, whole run", money(billed)))
    if billed is not None and estimate is not None and estimate > 0:
        rows.append(("billed so far / estimate" if missing else "billed / estimate", f"{billed / estimate:.2f}"))
    note = ("The estimate covers the whole job: what the pilot cost plus the rest extrapolated from the pilot's "
            "measured tokens. The bill is the run's cost in summary.json: every attempt, retries included.")
    return {"title": TITLE, "rows": rows, "note": note}
