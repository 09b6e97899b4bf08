"""`plan` and `prepare`: look at a job before running it, and lay down its run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import job_kwargs, job_options, quiet
from batchpilot.core.progress import Progress
from batchpilot.core.modes import MODES



@click.command()
@job_options
@click.option("--urgent", is_flag=True, help="Results are needed within minutes (favours direct).")
@click.option("--needs-tools", is_flag=True, help="Items need tools or file access (favours agents).")
@click.option("--dependent", is_flag=True, help="Items depend on each other (favours sequential).")
@click.option("--count-tokens", is_flag=True, help="Ask the API's count_tokens endpoint (a sample of up to 50 requests).")
@click.option("--emulate", is_flag=True, help="With --count-tokens: ask the local emulator instead of the API.")
@click.pass_context
def plan(ctx: click.Context, urgent: bool, needs_tools: bool, dependent: bool, count_tokens: bool, emulate: bool, **kw: Any) -> None:
    """Estimate tokens, cost and time per mode, and recommend one. Writes nothing.

    Example: batchpilot plan --template code-review --items 'src/**/*.py'
    """
    from batchpilot.prepare.plan import plan_job  # loaded per command, so `--help` stays light

    emit(plan_job(job_kwargs(kw), kw["variables"], urgent, needs_tools, dependent, count_tokens, emulate,
                  Progress(quiet(ctx))))


@click.command()
@job_options
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True), default=None,
              help="Run directory (default: .batchpilot/runs/<timestamp>-<template>).")
@click.option("--mode", type=click.Choice(MODES), default="batch", show_default=True,
              help="Executor the requests are shaped for (its prompt cache: see --cache).")
@click.pass_context
def prepare(ctx: click.Context, run_dir: Path | None, mode: str, **kw: Any) -> None:
    """Create a run directory: run.json, items.jsonl, requests.jsonl, schema.json, journal.jsonl.

    Example: batchpilot prepare --template code-review --items 'src/**/*.py' --run .batchpilot/runs/review
    """
    # Imported when the command runs: `plan`, which shares this module, never merges or writes a run.
    from batchpilot.executors.steps import prepare_job

    emit(prepare_job(job_kwargs(kw), mode, run_dir, Progress(quiet(ctx))))
