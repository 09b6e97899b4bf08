"""Merge: all result records of a run → one validated record per item, in input order, plus a summary.

Every executor appends the same records to `results.jsonl`, one per attempt and in any order, so merge
never cares which executor ran. It writes `merged.jsonl` (one line per item of `items.jsonl`, same order),
`summary.json`, and on request `merged.csv`, `merged.md`, `merged.sarif` or `pr-comment.md`
(`batchpilot.results.formats`).

Two streaming passes over the results, with memory bounded by an index of ids: `batchpilot.results.ledger`
(shared with repair, so `retry --only invalid` re-asks exactly the items merged here as `invalid`) indexes
`items.jsonl` and reduces `results.jsonl` to a few numbers per item; then `items.jsonl` is read again, in
order, and each item's outcome is judged from its latest success (earlier successes are tried when it fails,
so a later bad answer never hides an earlier good one; with no success the latest attempt decides). Each
merged line is written as it is made. Measured: about 160 bytes an item, whatever the size of the answers
(bench/bench_merge.py: +150 MB for 1,000,000 items and 1.2 GB of results).

For a findings schema with file and line fields, each finding of a file item is checked against the file
(`batchpilot.results.lines`) and the ones that fail are listed in the merged line as `finding_problems`.

Statuses: `ok` · `invalid` (answered, but no usable JSON or it breaks the schema) · `errored` ·
`expired` · `canceled` · `missing` (no result record yet).
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from batchpilot.core import crash
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.progress import Progress
from batchpilot.core.files import atomic_stream, atomic_write_json, dumps, iter_jsonl
from batchpilot.core.models import USAGE_KEYS
from batchpilot.results.exports import findings_field
from batchpilot.results.formats import EXPORTERS, FORMAT_WORDS, export_name
from batchpilot.results.lines import check_findings, has_line_fields, repo_path
from batchpilot.results.sarif import require_line_findings
from batchpilot.rundir.guard import run_is_emulated
from batchpilot.rundir.journal import journal
from batchpilot.results.judge import STATUSES, open_view
from batchpilot.results.ledger import index_items, outcome, scan_results
from batchpilot.results.summary import build_summary, run_prices
from batchpilot.rundir.lock import holds_run_lock

FAILURE_LIST_LIMIT = 200
LINE_FORMATS = ("sarif", "github")  # exports that need findings with file and line fields


def check_formats(schema: dict, formats: tuple[str, ...] | list[str]) -> None:
    """An Error/Hint when an export in `formats` needs what the schema lacks (sarif, github: findings with
    file and line fields); `run` calls it before it prepares or spends anything."""
    for fmt in formats:
        if fmt in LINE_FORMATS:
            require_line_findings(schema, fmt)


@holds_run_lock
def merge_run(run_dir: Path, formats: tuple[str, ...] | list[str] = ("jsonl",), progress: Any = None) -> dict:
    """Write merged.jsonl (always), summary.json and the extra `formats` (csv, md); return the summary."""
    run_dir = Path(run_dir)
    unknown_formats = [f for f in formats if f != "jsonl" and f not in EXPORTERS]
    if unknown_formats:
        raise BatchpilotError(f"unknown format {unknown_formats[0]!r}", f"formats are {', '.join(FORMAT_WORDS)}")
    view = open_view(run_dir)
    check_formats(view.schema, formats)  # before anything is written
    manifest = view.manifest
    prices = run_prices(manifest)
    default_mode = str(manifest.get("mode") or "batch")
    # A rehearsal's records say so one by one: a line copied out of merged.jsonl must not pass for a result.
    emulated = run_is_emulated(run_dir, manifest)
    if progress:
        progress.stage(f"merging {run_dir} ...")
    index = index_items(run_dir)
    if isinstance(manifest.get("item_count"), int) and manifest["item_count"] != len(index):
        raise BatchpilotError(f"{run_dir / 'items.jsonl'} holds {len(index)} items, run.json says {manifest['item_count']}",
                              "the run directory was edited or damaged; restore items.jsonl or prepare the run again")
    ledger, scan = scan_results(run_dir / "results.jsonl", index, prices, default_mode)
    del index  # pass 3 walks items.jsonl in order instead

    counts: Counter = Counter({s: 0 for s in STATUSES})
    error_types: Counter = Counter()
    failures: list[dict] = []
    model = manifest.get("model")
    results_path = run_dir / "results.jsonl"
    findings = findings_field(view.schema)
    findings = findings if has_line_fields(view.schema, findings) else None  # the line checks need file and lines
    flagged = 0
    reader = open(results_path, "rb") if results_path.exists() else nullcontext(None)  # no results: all missing
    with atomic_stream(run_dir / "merged.jsonl", sweep=True) as out, reader as fh:
        for pos, item in enumerate(iter_jsonl(run_dir / "items.jsonl", tolerate_torn_tail=False, require=("custom_id",))):
            status, output, error, record = outcome(pos, ledger, fh, view)
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
            if item.get("path"):
                merged["path"] = repo_path(item)  # from the repository root: what SARIF and PR links point at
            problems = check_findings(item, output, findings) if status == "ok" else None
            if problems is not None:
                merged["finding_problems"] = problems
                flagged += len(problems)
            if emulated:
                merged["emulated"] = True
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
        progress.update(len(ledger.attempts), len(ledger.attempts), "items")  # the final count, not the last step's
        progress.done()

    crash.point("merge-before-summary")
    files = {"merged.jsonl": str(run_dir / "merged.jsonl")}
    for fmt in formats:
        if fmt in EXPORTERS:
            name = export_name(fmt)
            EXPORTERS[fmt](run_dir / "merged.jsonl", run_dir / name, view.schema)
            files[name] = str(run_dir / name)
    summary = build_summary(run_dir, manifest, view.schema_source, counts, error_types, failures, scan, prices, files,
                            emulated)
    summary["findings_failing_line_checks"] = flagged
    atomic_write_json(run_dir / "summary.json", summary)
    journal(run_dir, "merged", counts={k: v for k, v in counts.items() if v}, unknown_results=scan.unknown)
    return summary


def merge_job(run_dir: Path, formats: tuple[str, ...], progress: Progress) -> dict:
    """The `merge` receipt: merged.jsonl in input order (and the other formats asked for), and summary.json."""
    summary = merge_run(run_dir, formats or ("jsonl",), progress=progress)
    if summary["unknown_results"]:
        progress.warn(f"{summary['unknown_results']} result record(s) name items that are not in this run; ignored")
    if summary["malformed_results"]:
        progress.warn(f"{summary['malformed_results']} result record(s) lack a custom_id or result; ignored")
    return {
        "command": "merge",
        "run": str(run_dir),
        "emulated": summary["emulated"],
        "items": summary["items"],
        "counts": summary["counts"],
        "error_types": summary["error_types"],
        "unknown_results": summary["unknown_results"],
        "cost_usd": summary["cost_usd"],
        "files": summary["files"],
        "next": summary["next"],
    }
