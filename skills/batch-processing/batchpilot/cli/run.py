"""`run`: the whole job in one command — prepare, execute, merge, report — resumable with the same --run.

batch, direct and headless run to the end (then merge and report); agents prepares and prints the first
wave of subagent tasks, because only the orchestrating agent can launch subagents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import click

from batchpilot.cli.options import next_command, quiet
from batchpilot.cli.prepare import _job_kwargs, job_options

MODES = ("auto", "batch", "direct", "agents", "headless")


@click.command()
@job_options
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory; give the same one again to resume (default: .batchpilot/runs/<timestamp>-<template>).")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
              help="Executor; auto takes plan's recommendation.")
@click.option("--urgent", is_flag=True, help="With --mode auto: results are needed within minutes (favours direct).")
@click.option("--needs-tools", is_flag=True, help="With --mode auto: items need tools or file access (favours agents).")
@click.option("--emulate", is_flag=True, help="Rehearse against the local emulator instead of the API (free, offline).")
@click.option("--no-wait", is_flag=True, help="Batch mode: return after submitting; follow with `status --wait`.")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, help="Batch mode: rounds including retries. [4]")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Direct and headless modes: stop before spending more than this.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Headless mode: claude processes at once.")
@click.option("-f", "--format", "formats", type=click.Choice(["jsonl", "csv", "md"]), multiple=True,
              help="Also write merged.csv / merged.md.")
@click.pass_context
def run(ctx: click.Context, run_dir: Path | None, mode: str, urgent: bool, needs_tools: bool, emulate: bool,
        no_wait: bool, max_rounds: int | None, max_cost: float | None, parallel: int, formats: tuple[str, ...],
        **kw: Any) -> None:
    """Prepare, execute, merge and report a job in one command.

    Example: batchpilot run --template code-review --items 'src/**/*.py' --mode batch --emulate
    """
    from batchpilot.cli.main import emit
    from batchpilot.core.errors import BatchpilotError
    from batchpilot.prepare.job import open_job
    from batchpilot.core.progress import Progress
    from batchpilot.rundir.create import create_run, default_run_dir

    progress = Progress(quiet(ctx))
    if mode == "auto":
        mode = _auto_mode(run_dir, urgent, needs_tools, emulate, kw, progress)
    job = open_job(mode=mode, **_job_kwargs(kw))
    target = run_dir or default_run_dir(job.template.name)
    progress.stage(f"run directory: {target} (re-run with --run {target} to resume)")
    prepared = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    if prepared.unchanged and prepared.manifest.get("mode") not in (None, mode):
        raise BatchpilotError(f"{target} was prepared for mode {prepared.manifest.get('mode')}, not {mode}",
                              f"re-run with --mode {prepared.manifest.get('mode')}, or pass a new --run directory")
    options = {"emulate": emulate, "no_wait": no_wait, "max_rounds": max_rounds, "max_cost": max_cost,
               "parallel": parallel, "formats": formats}
    summary = EXECUTORS[mode](ctx, prepared.run_dir, options, progress)
    emit({"command": "run", "run": str(prepared.run_dir), "mode": mode, "items": prepared.item_count,
          "resumed": prepared.unchanged, **summary})


def _auto_mode(run_dir: Path | None, urgent: bool, needs_tools: bool, emulate: bool, kw: dict, progress: Any) -> str:
    """The mode plan recommends for this job (a resumed run keeps the mode it was prepared with).

    With --emulate the job is a rehearsal of the API, so the choice is among the API modes (batch, direct).
    """
    from batchpilot.core.errors import BatchpilotError
    from batchpilot.prepare.job import open_job
    from batchpilot.prepare.plan import recommend
    from batchpilot.rundir.manifest import open_run

    if run_dir is not None and (Path(run_dir) / "run.json").is_file():
        return str(open_run(run_dir).get("mode") or "batch")
    job = open_job(mode="batch", **_job_kwargs(kw))
    count = sum(1 for _ in job.items())
    mode, why = recommend(count, needs_tools or job.template.needs_tools, urgent, False)
    if emulate and mode in ("agents", "headless"):
        mode, why = ("direct", "a rehearsal of the urgent path") if urgent else ("batch", "a rehearsal of the half-price path")
        why = f"--emulate rehearses the API modes: {why} (plan recommends agents or headless for the real job)"
    if mode not in EXECUTORS:
        raise BatchpilotError(f"plan recommends {mode}: {why}", "process the items in order yourself, or pick a --mode")
    progress.stage(f"mode {mode}: {why}")
    return mode


def _emulated(options: dict) -> list[str]:
    return ["--emulate"] if options["emulate"] else []


def run_direct_mode(ctx: click.Context, run_dir: Path, options: dict, progress: Any) -> dict:
    """Direct mode: the Messages API at the rate limit, then merge and report."""
    from batchpilot.api.client import api_client
    from batchpilot.executors.direct.executor import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, run_direct

    with api_client(options["emulate"], async_client=True, max_retries=0) as client:
        receipt = run_direct(run_dir, client, concurrency=DEFAULT_CONCURRENCY, max_cost=options["max_cost"],
                             max_attempts=DEFAULT_MAX_ATTEMPTS, progress=progress, handle_sigint=True)
    from batchpilot.api.failures import raise_if_unreachable

    raise_if_unreachable(receipt["counts"], next_command("direct", run_dir))
    if receipt.get("stopped") in ("interrupted", "max_cost") or receipt["counts"].get("not_run"):
        return {"direct": receipt, "next": next_command("direct", run_dir, *_emulated(options))}
    return _finish(run_dir, options, progress, {"direct": receipt})


def run_headless_mode(ctx: click.Context, run_dir: Path, options: dict, progress: Any) -> dict:
    """Headless mode: `claude -p` subprocesses (pointed at an in-process emulator with --emulate)."""
    from contextlib import ExitStack

    from batchpilot.executors.headless import run_headless

    with ExitStack() as stack:
        env = None
        if options["emulate"]:
            from batchpilot.api.client import EMULATOR_KEY
            from batchpilot.emulator.config import EmulatorConfig
            from batchpilot.emulator.http.server import Emulator

            emu = stack.enter_context(Emulator(EmulatorConfig(allow_unknown_models=True)))
            env = {**os.environ, "ANTHROPIC_BASE_URL": emu.base_url, "ANTHROPIC_API_KEY": EMULATOR_KEY}
        receipt = run_headless(run_dir, options["parallel"], max_cost=options["max_cost"], env=env,
                               progress=lambda done, total: progress.update(done, total, "items"))
        progress.done()
    if receipt.get("stopped"):
        return {"headless": receipt, "next": next_command("headless", run_dir)}
    return _finish(run_dir, options, progress, {"headless": receipt})


def run_agents_mode(ctx: click.Context, run_dir: Path, options: dict, progress: Any) -> dict:
    """Agents mode: write the prompt files and return the first wave; the orchestrating agent takes it from there."""
    from batchpilot.executors.agents import fanout_run

    receipt = fanout_run(run_dir)
    receipt.pop("command", None)
    receipt.pop("run", None)
    receipt.pop("items", None)
    return receipt


def _finish(run_dir: Path, options: dict, progress: Any, extra: dict) -> dict:
    merged, report = _merge_and_report(run_dir, options["formats"], progress)
    failed = sum(n for status, n in merged["counts"].items() if status != "ok")
    from batchpilot.cli.main import COMMANDS

    return {**extra, "counts": merged["counts"], "cost_usd": merged.get("cost_usd"),
            "files": {**merged.get("files", {}), **report},
            "next": next_command("retry", run_dir, *_emulated(options)) if failed and "retry" in COMMANDS else None}


def run_batch(ctx: click.Context, run_dir: Path, options: dict, progress: Any, emulator_config: Any = None) -> dict:
    """Batch mode: submit → wait → fetch → retry rounds → merge → report. Returns the receipt's body."""
    from batchpilot.executors.batch.driver import batch_client, counts_receipt, drive
    from batchpilot.cli.batch import _api_errors
    from batchpilot.core.errors import BatchpilotError
    from batchpilot.rundir.lock import run_lock
    from batchpilot.results.selection import DEFAULT_MAX_ROUNDS

    emulate, no_wait, max_rounds, formats = options["emulate"], options["no_wait"], options["max_rounds"], options["formats"]
    emulated = _emulated(options)
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
    from batchpilot.results.merge import merge_run
    from batchpilot.report.markdown import write_report

    merged = merge_run(run_dir, formats or ("jsonl",), progress=progress)
    report = write_report(run_dir, progress=progress)
    return merged, report


EXECUTORS: dict[str, Callable[..., dict]] = {
    "batch": run_batch, "direct": run_direct_mode, "agents": run_agents_mode, "headless": run_headless_mode,
}
