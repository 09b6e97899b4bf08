"""Exports: merged.jsonl → merged.csv and merged.md, streamed, for people and spreadsheets (the registry of
every format, SARIF and GitHub included, is `batchpilot.results.formats`).

Columns come from the schema, not from the data, so every row has the same shape: `custom_id`, `status`,
`source`, then the output's top-level properties (objects flattened one level as `a.b`, lists as JSON
text), then — for a findings-style schema, whose output holds a top-level array of objects — one column per
finding property and one row per finding, then `error_type` and `error_message`. An item without findings,
or that failed, still gets one row.

Model output is untrusted: CSV cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
CR first) get a leading `'`; Markdown cells have `|`, HTML and line breaks escaped.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any, Iterator

from batchpilot.core.files import atomic_stream, iter_jsonl

BASE_COLUMNS = ("custom_id", "status", "source")
TAIL_COLUMNS = ("error_type", "error_message")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def findings_field(schema: dict) -> str | None:
    """The top-level array property whose items are objects with properties (`findings`), if any."""
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict) and prop.get("type") == "array":
            items = prop.get("items")
            if isinstance(items, dict) and items.get("type") == "object" and items.get("properties"):
                return name
    return None


class Layout:
    """The columns of one schema, and how an item's merged record becomes rows."""

    def __init__(self, schema: dict):
        props = schema.get("properties") or {}
        self.findings = findings_field(schema)
        self.top: list[tuple[str, str, str | None]] = []  # (column, property, sub-property)
        for name, prop in props.items():
            if name == self.findings:
                continue
            sub = prop.get("properties") if isinstance(prop, dict) and prop.get("type") == "object" else None
            if sub:
                self.top += [(f"{name}.{s}", name, s) for s in sub]
            else:
                self.top.append((name, name, None))
        if not props:
            self.top.append(("output", "", None))
        taken = set(BASE_COLUMNS) | {c for c, _, _ in self.top} | set(TAIL_COLUMNS)
        finding_props = list(((props.get(self.findings) or {}).get("items") or {}).get("properties") or {}) if self.findings else []
        self.finding_cols = [(f"finding_{p}" if p in taken else p, p) for p in finding_props]
        self.columns = [*BASE_COLUMNS, *(c for c, _, _ in self.top), *(c for c, _ in self.finding_cols), *TAIL_COLUMNS]

    def rows(self, merged: dict) -> Iterator[list[Any]]:
        output = merged.get("output") if isinstance(merged.get("output"), dict) else None
        error = merged.get("error") or {}
        head = [merged.get("custom_id"), merged.get("status"), merged.get("source")]
        for _, prop, sub in self.top:
            if output is None:
                head.append(None)
            elif not prop:
                head.append(output)
            else:
                value = output.get(prop)
                head.append(value.get(sub) if sub and isinstance(value, dict) else value)
        tail = [error.get("type"), error.get("message")]
        findings = output.get(self.findings) if output is not None and self.findings else None
        if isinstance(findings, list) and findings:
            for finding in findings:
                finding = finding if isinstance(finding, dict) else {}
                yield head + [finding.get(p) for _, p in self.finding_cols] + tail
        else:
            yield head + [None] * len(self.finding_cols) + tail


def cell_text(value: Any) -> str:
    """A cell's text: strings as they are, null empty, anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def csv_cell(value: Any) -> str:
    text = cell_text(value)
    return "'" + text if isinstance(value, str) and text.startswith(FORMULA_PREFIXES) else text


def md_cell(value: Any) -> str:
    text = html.escape(cell_text(value), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


def _table(merged_path: Path, layout: Layout) -> Iterator[list[Any]]:
    """Every row of every merged record, in merged.jsonl order."""
    for merged in iter_jsonl(merged_path):
        yield from layout.rows(merged)


def write_csv(merged_path: Path, target: Path, schema: dict) -> int:
    """merged.jsonl → CSV (RFC 4180, UTF-8); returns the number of data rows."""
    layout, rows = Layout(schema), 0
    with atomic_stream(target, sweep=True) as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(layout.columns)
        for row in _table(merged_path, layout):
            writer.writerow([csv_cell(v) for v in row])
            rows += 1
    return rows


def write_md(merged_path: Path, target: Path, schema: dict) -> int:
    """merged.jsonl → one Markdown table; returns the number of data rows."""
    layout, rows = Layout(schema), 0
    with atomic_stream(target, sweep=True) as fh:
        fh.write("| " + " | ".join(md_cell(c) for c in layout.columns) + " |\n")
        fh.write("|" + "---|" * len(layout.columns) + "\n")
        for row in _table(merged_path, layout):
            fh.write("| " + " | ".join(md_cell(v) for v in row) + " |\n")
            rows += 1
    return rows
