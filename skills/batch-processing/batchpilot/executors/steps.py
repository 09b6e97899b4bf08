"""The steps around an executor: prepare a run directory before it, merge and report the results after it.

The `prepare` command is the first step alone (`prepare_job` returns its receipt); `run` uses both around an
executor (batchpilot.executors.pipeline). They need none of the executors' modules, so `prepare` loads none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchpilot.core.modes import next_for_mode
from batchpilot.core.progress import Progress
from batchpilot.prepare.job import open_job
from batchpilot.report.markdown import write_report
from batchpilot.results.merge import merge_run
from batchpilot.rundir.create import create_run, default_run_dir
from batchpilot.prepare.run_estimate import RunEstimate

SKIPPED_LISTED = 20  # skipped items `prepare` names on stderr; skipped.jsonl lists them all


def prepare_job(job_kwargs: dict[str, Any], mode: str, run_dir: Path | None, progress: Progress) -> dict:
    """The `prepare` receipt: the job's run directory, created (or found unchanged) for `mode`."""
    job = open_job(mode=mode, **job_kwargs)
    target = run_dir or default_run_dir(job.template.name)
    progress.stage(f"preparing {target} ...")
    result = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest(),
                        estimate=RunEstimate.for_job(job))
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
        **({"csv_header": job.header} if job.header else {}),
        "model": job.model,
        "mode": mode,
        # run.json's: the choice made for the job's size, also when the run was already there (unchanged)
        "cache": result.manifest.get("cache", job.builder.cache_choice),
        "files": {name: str(run / name) for name in ("run.json", "items.jsonl", "requests.jsonl", "schema.json", "journal.jsonl", "skipped.jsonl")},
        "next": next_for_mode(mode, run),
    }


def merge_and_report(run_dir: Path, formats: tuple[str, ...], progress: Progress) -> tuple[dict, dict]:
    """merge_run, then write_report: the merge summary and the report's files."""
    merged = merge_run(run_dir, formats or ("jsonl",), progress=progress)
    report = write_report(run_dir, progress=progress)
    return merged, report
