"""The steps around an executor: prepare a run directory before it, merge and report the results after it.

The `prepare`, `merge` and `report` commands are these steps alone, and `run` uses them around an executor
(batchpilot.executors.pipeline). They need none of the executors' modules, so those commands load none.
Each `*_job` function returns its command's receipt; the CLI prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchpilot.core.files import read_json
from batchpilot.core.progress import Progress
from batchpilot.prepare.job import open_job
from batchpilot.prepare.plan import next_for_mode
from batchpilot.report.markdown import write_report
from batchpilot.results.merge import merge_run
from batchpilot.rundir.create import create_run, default_run_dir

SKIPPED_LISTED = 20  # skipped items `prepare` names on stderr; skipped.jsonl lists them all


def prepare_job(job_kwargs: dict[str, Any], mode: str, run_dir: Path | None, progress: Progress) -> dict:
    """The `prepare` receipt: the job's run directory, created (or found unchanged) for `mode`."""
    job = open_job(mode=mode, **job_kwargs)
    target = run_dir or default_run_dir(job.template.name)
    progress.stage(f"preparing {target} ...")
    result = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    for source, reason, detail in job.skipped[:SKIPPED_LISTED]:
        progress.stage(f"skipped {source}: {reason} ({detail})")
    if len(job.skipped) > SKIPPED_LISTED:
        progress.stage(f"... and {len(job.skipped) - SKIPPED_LISTED} more, listed in skipped.jsonl")
    run = result.run_dir
    return {
        "command": "prepare",
        "run": str(run),
        "unchanged": result.unchanged,
        "items": result.item_count,
        "skipped": dict(result.skipped),
        "model": job.model,
        "mode": mode,
        "files": {name: str(run / name) for name in ("run.json", "items.jsonl", "requests.jsonl", "schema.json", "journal.jsonl", "skipped.jsonl")},
        "next": next_for_mode(mode, run),
    }


def merge_and_report(run_dir: Path, formats: tuple[str, ...], progress: Progress) -> tuple[dict, dict]:
    """merge_run, then write_report: the merge summary and the report's files."""
    merged = merge_run(run_dir, formats or ("jsonl",), progress=progress)
    report = write_report(run_dir, progress=progress)
    return merged, report


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
        "items": summary["items"],
        "counts": summary["counts"],
        "error_types": summary["error_types"],
        "unknown_results": summary["unknown_results"],
        "cost_usd": summary["cost_usd"],
        "files": summary["files"],
        "next": summary["next"],
    }


def report_job(run_dir: Path, progress: Progress) -> dict:
    """The `report` receipt: report.md and report.html (merging first when the results are newer)."""
    files = write_report(run_dir, progress=progress)
    summary = read_json(run_dir / "summary.json", "summary")
    return {"command": "report", "run": str(run_dir), "counts": summary.get("counts"), "files": files, "next": None}
