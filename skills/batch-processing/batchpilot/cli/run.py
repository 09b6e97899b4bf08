"""`run`: the whole job in one command — prepare, execute, merge, report — resumed when typed again.

batch, direct and headless run to the end (then merge and report); agents prepares and prints the first
wave of subagent tasks, because only the orchestrating agent can launch subagents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import format_option, job_kwargs, job_options, quiet
from batchpilot.core.modes import MODES
from batchpilot.core.progress import Progress

RUN_MODES = ("auto", *MODES)


@click.command()
@job_options
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True), default=None,
              help="Run directory (default: the unfinished run of this same job under .batchpilot/runs/, else a new "
                   ".batchpilot/runs/<timestamp>-<template>).")
@click.option("--new", is_flag=True,
              help="Start a new run even if an unfinished or finished run of this same job exists (default: resume it).")
@click.option("--mode", type=click.Choice(RUN_MODES), default="auto", show_default=True,
              help="Executor; auto takes plan's recommendation.")
@click.option("--urgent", is_flag=True, help="With --mode auto: results are needed within minutes (favours direct).")
@click.option("--needs-tools", is_flag=True, help="With --mode auto: items need tools or file access (favours agents).")
@click.option("--emulate", is_flag=True, help="Rehearse against the local emulator instead of the API (free, offline).")
@click.option("--no-wait", is_flag=True, help="Batch mode: return after submitting; follow with `status --wait`.")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, help="Batch mode: rounds including retries. [4]")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Direct and headless modes: the run's budget, held across resumes; stop before spending more; "
                   "with --pilot, stop after the pilot when the whole job is extrapolated above it.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Headless mode: claude processes at once.")
@click.option("--pilot", type=click.IntRange(min=1), default=None, metavar="N",
              help="First run N items (shortest, longest, random) through the direct API, measure them and "
                   "extrapolate the whole job's cost per mode (the report sets it against the bill); then continue with the rest (batch or direct mode; "
                   "attachments inline, not --upload files).")
@click.option("--pilot-only", is_flag=True,
              help="With --pilot: stop after the pilot (also the default when the extrapolated cost exceeds --max-cost, "
                   "or when no pilot item was answered).")
@format_option
@click.pass_context
def run(ctx: click.Context, run_dir: Path | None, new: bool, mode: str, urgent: bool, needs_tools: bool, emulate: bool,
        no_wait: bool, max_rounds: int | None, max_cost: float | None, parallel: int, pilot: int | None,
        pilot_only: bool, formats: tuple[str, ...], **kw: Any) -> None:
    """Prepare, execute, merge and report a job in one command.

    Example: batchpilot run --template code-review --items 'src/**/*.py' --mode batch --emulate
    """
    # Imported when the command runs: the pipeline loads every executor, which `run --help` does not need.
    from batchpilot.executors.pipeline import RunOptions, run_job

    if new and run_dir is not None:
        raise click.UsageError("--new starts a new run directory; drop --run, or drop --new to resume that run")
    if pilot_only and pilot is None:  # else the whole job would run and be paid for
        raise click.UsageError("--pilot-only stops after a pilot, and no --pilot N was given; "
                               "add --pilot N (e.g. --pilot 20), or drop --pilot-only to run the whole job")
    options = RunOptions(emulate=emulate, no_wait=no_wait, max_rounds=max_rounds, max_cost=max_cost,
                         parallel=parallel, formats=formats, pilot=pilot, pilot_only=pilot_only)
    emit(run_job(job_kwargs(kw), run_dir, mode, urgent, needs_tools, options, Progress(quiet(ctx)), new=new))
