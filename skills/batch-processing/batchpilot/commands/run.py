"""`run`: the whole job in one command — prepare, execute, merge, report — resumable with the same --run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from batchpilot.commands.common import next_command, quiet
from batchpilot.commands.prepare import _job_kwargs, job_options

MODES = ("auto", "batch", "direct", "agents", "headless")
# Executors `run` can drive in this version. Other modes are run with their own commands.
RUNNABLE = ("batch",)
OWN_COMMANDS = {"agents": "fanout", "headless": "headless", "direct": "direct"}


@click.command()
@job_options
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory; give the same one again to resume (default: .batchpilot/runs/<timestamp>-<template>).")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
              help="Executor; auto takes plan's recommendation among the modes `run` can drive.")
@click.option("--emulate", is_flag=True, help="Rehearse against the local emulator instead of the API (free, offline).")
@click.option("--no-wait", is_flag=True, help="Batch mode: return after submitting; follow with `status --wait`.")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, help="Rounds including retries. [4]")
@click.option("-f", "--format", "formats", type=click.Choice(["jsonl", "csv", "md"]), multiple=True,
              help="Also write merged.csv / merged.md.")
@click.pass_context
def run(ctx: click.Context, run_dir: Path | None, mode: str, emulate: bool, no_wait: bool, max_rounds: int | None,
        formats: tuple[str, ...], **kw: Any) -> None:
    """Prepare, execute, merge and report a job in one command.

    Example: batchpilot run --template code-review --items 'src/**/*.py' --mode batch --emulate
    """
    from batchpilot.cli import emit
    from batchpilot.errors import BatchpilotError
    from batchpilot.job import open_job
    from batchpilot.progress import Progress
    from batchpilot.runs import create_run, default_run_dir

    progress = Progress(quiet(ctx))
    if mode not in ("auto", *RUNNABLE):
        own = OWN_COMMANDS.get(mode)
        from batchpilot.cli import COMMANDS

        hint = (f"prepare with `batchpilot prepare ... --mode {mode}`, then run `batchpilot {own} RUN`"
                if own in COMMANDS else "use --mode batch (or auto)")
        raise BatchpilotError(f"`run --mode {mode}` is not available in this version of batchpilot", hint)
    job = open_job(mode="batch", **_job_kwargs(kw))
    target = run_dir or default_run_dir(job.template.name)
    progress.stage(f"run directory: {target} (re-run with --run {target} to resume)")
    prepared = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    if mode == "auto":
        from batchpilot.plan import recommend

        wanted, why = recommend(prepared.item_count, job.template.needs_tools, False, False)
        if wanted not in RUNNABLE:
            progress.stage(f"plan recommends {wanted} ({why}); `run` drives batch mode in this version, so batch it is")
        mode = wanted if wanted in RUNNABLE else "batch"
    summary = EXECUTORS[mode](ctx, prepared.run_dir, emulate, no_wait, max_rounds, formats, progress)
    emit({"command": "run", "run": str(prepared.run_dir), "mode": mode, "items": prepared.item_count,
          "resumed": prepared.unchanged, **summary})


def run_batch(ctx: click.Context, run_dir: Path, emulate: bool, no_wait: bool, max_rounds: int | None,
              formats: tuple[str, ...], progress: Any, emulator_config: Any = None) -> dict:
    """Batch mode: submit → wait → fetch → retry rounds → merge → report. Returns the receipt's body."""
    from batchpilot.batchrun import batch_client, counts_receipt, drive
    from batchpilot.commands.batch import _api_errors
    from batchpilot.errors import BatchpilotError
    from batchpilot.ledger import run_lock
    from batchpilot.retry import DEFAULT_MAX_ROUNDS

    emulated = ["--emulate"] if emulate else []
    with run_lock(run_dir):
        with batch_client(emulate, run_dir, emulator_config) as client:
            try:
                outcome = _api_errors(lambda: drive(client, run_dir, progress, emulate, wait=not no_wait,
                                                    max_rounds=max_rounds or DEFAULT_MAX_ROUNDS))
            except BatchpilotError:
                if (run_dir / "results.jsonl").exists():
                    _merge_and_report(run_dir, formats, progress)  # what did finish is still worth reading
                raise
    if outcome.waiting:
        return {**counts_receipt(run_dir), "batch_ids": outcome.submitted,
                "next": next_command("status", run_dir, "--wait", *emulated)}
    progress.stage(f"batches done: {outcome.stopped}")
    merged, report = _merge_and_report(run_dir, formats, progress)
    failed = sum(n for status, n in merged["counts"].items() if status != "ok")
    return {**counts_receipt(run_dir), "stopped": outcome.stopped, "counts": merged["counts"],
            "cost_usd": merged.get("cost_usd") or (merged.get("cost") or {}).get("usd"),
            "files": {**merged.get("files", {}), **report},
            "next": next_command("retry", run_dir, *emulated) if failed else None}


def _merge_and_report(run_dir: Path, formats: tuple[str, ...], progress: Any) -> tuple[dict, dict]:
    from batchpilot.merge import merge_run
    from batchpilot.report import write_report

    merged = merge_run(run_dir, formats or ("jsonl",), progress=progress)
    report = write_report(run_dir, progress=progress)
    return merged, report


EXECUTORS: dict[str, Callable[..., dict]] = {"batch": run_batch}
