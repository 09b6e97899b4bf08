"""Report: a merged run → `report.md` and a self-contained `report.html` (no network, no external URLs).

`write_report` merges first when `summary.json` is missing or older than `results.jsonl`, then streams
`merged.jsonl` once, keeping at most REPORT_MAX_ITEMS item rows and REPORT_MAX_FINDINGS finding rows for
the tables (the counts and the charts cover everything; the full data stays in merged.jsonl). The HTML page
itself is built by `batchpilot.report.html`.

Everything that came from an item or from the model is untrusted and is escaped on the way out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from batchpilot.core.files import atomic_stream, iter_jsonl, read_json
from batchpilot.core.progress import Progress
from batchpilot.results.exports import cell_text, findings_field, md_cell
from batchpilot.results.formats import EXPORTERS, export_name
from batchpilot.results.lines import has_line_fields
from batchpilot.report.estimate import estimate_section, money as _money
from batchpilot.report.html import EMULATED_BANNER, readable_time, render_html
from batchpilot.results.merge import merge_run
from batchpilot.results.validate import schema_for_run
from batchpilot.rundir.manifest import open_run

MD_TOP_FINDINGS = 10
REPORT_MAX_ITEMS = 5_000
REPORT_MAX_FINDINGS = 20_000
REPORT_MAX_TEXT = 400
MD_MAX_FAILURES = 50


def _stale(run_dir: Path) -> bool:
    summary, merged, results = run_dir / "summary.json", run_dir / "merged.jsonl", run_dir / "results.jsonl"
    if not summary.exists() or not merged.exists():
        return True
    return results.exists() and results.stat().st_mtime > summary.stat().st_mtime


def _clip(value: Any, limit: int = REPORT_MAX_TEXT) -> Any:
    """Text cut to `limit` characters; numbers stay numbers so the page sorts them as numbers."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = cell_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def headline_field(schema: dict, findings: str | None) -> str | None:
    """The first top-level string property of the schema (e.g. `summary`): the items table shows it."""
    for name, prop in (schema.get("properties") or {}).items():
        if name != findings and isinstance(prop, dict) and prop.get("type") == "string":
            return name
    return None


def collect(run_dir: Path, schema: dict) -> dict:
    """The tables' data (capped) and the finding counts, from one pass over merged.jsonl."""
    findings = findings_field(schema)
    finding_schema = ((schema.get("properties") or {}).get(findings) or {}).get("items") or {} if findings else {}
    finding_props = list(finding_schema.get("properties") or {})
    enums = {p: s["enum"] for p, s in (finding_schema.get("properties") or {}).items() if isinstance(s, dict) and isinstance(s.get("enum"), list)}
    headline = headline_field(schema, findings)
    item_cols = ["custom_id", "status", "source"] + ([headline] if headline else []) + ([findings] if findings else []) + ["error", "attempts", "cost_usd"]
    items: list[list] = []
    found: list[list] = []
    totals = Counter()
    severity = Counter()
    severity_key = "severity" if "severity" in finding_props else None
    checked = has_line_fields(schema, findings)  # findings a line check applies to get a line_check column
    flagged: list[tuple] = []
    for merged in iter_jsonl(run_dir / "merged.jsonl"):
        totals["items"] += 1
        output = merged.get("output") if isinstance(merged.get("output"), dict) else None
        error = merged.get("error") or {}
        entries = output.get(findings) if output is not None and findings else None
        entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        totals["findings"] += len(entries)
        problems = {p.get("finding"): p.get("problem") for p in merged.get("finding_problems") or [] if isinstance(p, dict)}
        for n, entry in enumerate(entries):
            if severity_key:
                severity[str(entry.get(severity_key))] += 1
            if len(found) < REPORT_MAX_FINDINGS:
                row = [merged.get("custom_id")] + [_clip(entry.get(p)) for p in finding_props]
                found.append(row + [_clip(problems.get(n) or "ok")] if checked else row)
        if problems and len(flagged) < MD_MAX_FAILURES:
            flagged += [(merged.get("custom_id"), text) for text in problems.values()][: MD_MAX_FAILURES - len(flagged)]
        totals["flagged"] += len(problems)
        if len(items) < REPORT_MAX_ITEMS:
            row = [merged.get("custom_id"), merged.get("status"), _clip(merged.get("source"))]
            if headline:
                row.append(_clip(output.get(headline)) if output else None)
            if findings:
                row.append(len(entries))
            row += [_clip(f"{error.get('type')}: {error.get('message')}") if error else "", merged.get("attempts"), merged.get("cost_usd")]
            items.append(row)
    order = enums.get("severity", [])
    found.sort(key=lambda row: finding_key(row, finding_props, order))
    return {
        "items": {"columns": item_cols, "rows": items, "total": totals["items"], "enums": {"status": ["invalid", "errored", "expired", "canceled", "missing", "ok"]}},
        "findings": {"columns": ["custom_id"] + finding_props + (["line_check"] if checked else []), "rows": found,
                     "total": totals["findings"], "enums": enums} if findings else None,
        "flagged": {"total": totals["flagged"], "examples": flagged},
        "severity": dict(severity),
        "severity_order": enums.get("severity", []),
    }


def finding_key(row: list, props: list[str], severity_order: list) -> tuple:
    """Findings sort by severity (the schema's enum order, most severe first), then file, then line."""
    def col(name: str) -> Any:
        return row[1 + props.index(name)] if name in props else None

    sev = col("severity")
    rank = severity_order.index(sev) if sev in severity_order else len(severity_order)
    line = col("line_start") if col("line_start") is not None else col("line")
    return (rank, str(col("file") or col("path") or row[0] or ""), line if isinstance(line, (int, float)) else float("inf"))


def write_report(run_dir: Path, progress: Any = None, formats: tuple[str, ...] = ()) -> dict:
    """Write report.md and report.html for a run (merging first if needed, or when `formats` asks for
    exports); return their paths."""
    run_dir = Path(run_dir)
    manifest = open_run(run_dir)
    asked = tuple(f for f in formats if f != "jsonl")
    if _stale(run_dir) or asked:
        extra = [fmt for fmt in EXPORTERS if (run_dir / export_name(fmt)).exists() and fmt not in asked]  # keep exports current
        merge_run(run_dir, ("jsonl", *asked, *extra), progress=progress)
    summary = read_json(run_dir / "summary.json", "summary")
    schema = schema_for_run(run_dir, manifest)
    if progress:
        progress.stage(f"writing the report of {run_dir} ...")
    data = collect(run_dir, schema)
    pilot = read_json(run_dir / "pilot.json", "pilot.json") if (run_dir / "pilot.json").exists() else None
    data["estimate"] = estimate_section(manifest, summary, pilot)  # plan's (and a pilot's) estimate against the bill
    with atomic_stream(run_dir / "report.md", sweep=True) as fh:
        fh.write(render_md(manifest, summary, data))
    with atomic_stream(run_dir / "report.html", sweep=True) as fh:
        fh.write(render_html(manifest, summary, data))
    return {"report.md": str(run_dir / "report.md"), "report.html": str(run_dir / "report.html")}


def top_findings(findings: dict) -> list[str]:
    """Markdown lines: the first MD_TOP_FINDINGS findings in report order (most severe first)."""
    cols = findings["columns"]
    shown = [c for c in ("custom_id", "severity", "file", "line_start", "category", "message", "title") if c in cols]
    if not findings["rows"] or len(shown) < 2:
        return []
    out = ["", f"### Top findings ({min(MD_TOP_FINDINGS, len(findings['rows']))} of {findings['total']})", "",
           "| " + " | ".join(c.replace("_", " ") for c in shown) + " |", "|" + "---|" * len(shown)]
    for row in findings["rows"][:MD_TOP_FINDINGS]:
        out.append("| " + " | ".join(md_cell(_clip(row[cols.index(c)], 160)) for c in shown) + " |")
    return out


def render_md(manifest: dict, summary: dict, data: dict) -> str:
    """The Markdown report: header, status counts, cost and tokens, findings by severity, failures."""
    template = manifest.get("template") or {}
    lines = [f"# Batch report: {md_cell(template.get('name'))}", ""]
    if summary.get("emulated"):
        lines += [f"> **{EMULATED_BANNER}**", ""]
    lines += [
        f"- Model: {md_cell(manifest.get('model'))} · output style {md_cell(manifest.get('output_style'))} · "
        f"modes: {md_cell(', '.join(summary.get('by_mode') or {}) or 'none yet')}",
        f"- Prepared {readable_time(manifest.get('created_at'))}; results from {readable_time(summary['duration'].get('first_result_at'))} "
        f"to {readable_time(summary['duration'].get('last_result_at'))}; merged {readable_time(summary.get('merged_at'))}",
        f"- Items: {summary['items']} · result records: {summary['result_records']} · unknown results ignored: {summary['unknown_results']}",
        "",
        "## Status",
        "",
        "| status | items | share |",
        "|---|---:|---|",
    ]
    total = summary["items"] or 1
    for status, n in summary["counts"].items():
        lines.append(f"| {status} | {n} | {'█' * round(20 * n / total)} {100 * n / total:.1f}% |")
    usage = summary["usage"]
    savings = summary.get("savings_usd") or {}
    lines += [
        "",
        "## Cost and tokens",
        "",
        "| | |",
        "|---|---:|",
        f"| cost | {_money(summary.get('cost_usd'))} |",
        f"| at standard prices (no batch, no caching) | {_money(summary.get('standard_cost_usd'))} |",
        f"| saved by batch | {_money(savings.get('batch'))} |",
        f"| saved by prompt caching | {_money(savings.get('caching'))} |",
        *(f"| {k.replace('_', ' ')} | {v:,} |" for k, v in usage.items()),
    ]
    if summary.get("usage_unknown_attempts"):
        lines.append(f"| billed attempts without usage (cost unknown) | {summary['usage_unknown_attempts']} |")
    estimate = data.get("estimate")
    if estimate:
        lines += ["", f"## {estimate['title']}", "", "| | |", "|---|---:|"]
        lines += [f"| {md_cell(label)} | {md_cell(text)} |" for label, text in estimate["rows"]]
        lines += ["", md_cell(estimate["note"])]
    if data.get("findings"):
        lines += ["", f"## Findings: {data['findings']['total']}", "", "| severity | findings |", "|---|---:|"]
        order = data["severity_order"] + sorted(set(data["severity"]) - set(data["severity_order"]))
        lines += [f"| {md_cell(s)} | {data['severity'][s]} |" for s in order if s in data["severity"]]
        lines += top_findings(data["findings"])
    flagged = data.get("flagged") or {}
    if flagged.get("total"):
        lines += ["", f"## Findings that fail the line check: {flagged['total']}", "",
                  "Their file or line range does not hold against the item; they are kept in merged.jsonl "
                  "(`finding_problems`) but left out of the SARIF and GitHub exports.", "", "| item | problem |", "|---|---|"]
        lines += [f"| {md_cell(cid)} | {md_cell(_clip(text))} |" for cid, text in flagged["examples"]]
    failures = summary.get("failures") or []
    if failures:
        lines += ["", f"## Failures: {summary['failures_total']}", "", "| item | status | reason |", "|---|---|---|"]
        lines += [f"| {md_cell(f['custom_id'])} | {f['status']} | {md_cell(_clip(f['message']))} |" for f in failures[:MD_MAX_FAILURES]]
        if summary["failures_total"] > MD_MAX_FAILURES:
            lines.append(f"\n{summary['failures_total'] - MD_MAX_FAILURES} more in merged.jsonl (every record whose status is not ok).")
    lines += ["", "## Files", "", "- `merged.jsonl`: one record per item, in input order", "- `summary.json`: the figures above",
              "- `report.html`: the same report with every item and finding in sortable, filterable tables", ""]
    if summary.get("next") and " report " not in f"{summary['next']} ":
        lines += [f"Next: `{summary['next']}`", ""]
    return "\n".join(lines)


def report_job(run_dir: Path, progress: Progress, formats: tuple[str, ...] = ()) -> dict:
    """The `report` receipt: report.md and report.html (merging first when the results are newer), and the
    exports `formats` names."""
    files = write_report(run_dir, progress=progress, formats=formats)
    summary = read_json(run_dir / "summary.json", "summary")
    return {"command": "report", "run": str(run_dir), "counts": summary.get("counts"), "files": files, "next": None}
