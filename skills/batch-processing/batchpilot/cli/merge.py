"""`merge` and `report`: one validated table in input order, then a Markdown and an HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import RUN_ARG, format_option, quiet
from batchpilot.core.progress import Progress


@click.command()
@RUN_ARG
@format_option
@click.pass_context
def merge(ctx: click.Context, run_dir: Path, formats: tuple[str, ...]) -> None:
    """Merge a run's results into merged.jsonl (input order, validated) and summary.json.

    merged.jsonl is always written. Example: batchpilot merge .batchpilot/runs/review --format sarif
    """
    # Imported when the command runs: merging is not needed for `--help`.
    from batchpilot.results.merge import merge_job

    emit(merge_job(run_dir, formats, Progress(quiet(ctx))))


@click.command()
@RUN_ARG
@format_option
@click.pass_context
def report(ctx: click.Context, run_dir: Path, formats: tuple[str, ...]) -> None:
    """Write report.md and a self-contained report.html (merging first when the results are newer).

    Exports written before are kept current; batch and direct runs show plan's estimate (and a pilot's) against the bill. Example: batchpilot report .batchpilot/runs/review --format github
    """
    # Imported when the command runs: the report writers are not needed for `--help`.
    from batchpilot.report.markdown import report_job

    emit(report_job(run_dir, Progress(quiet(ctx)), formats))
