"""The pipeline `run` drives: prepare (or resume) a run directory, run one executor over it, merge, report.

`EXECUTORS` is the one table of executors: a mode word to the function that runs a prepared run in that mode
and returns the body of the `run` receipt. batch, direct and headless run to the end, then merge and report
(batchpilot.executors.steps); agents writes the prompt files and returns the first wave of subagent tasks,
because only the orchestrating agent can launch subagents. The `direct` and `headless` commands run one
executor alone (`executors.direct.command.direct_job`, `executors.headless.headless_job`); `retry` and `demo`
reuse the batch run. Each function returns its command's receipt, or the body of one; the CLI prints it.
"""

from __future__ import annotations

import os
import shlex
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from batchpilot.api.client import EMULATOR_KEY, api_client, sdk_errors
from batchpilot.api.failures import raise_if_unreachable
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.modes import api_key_present, claude_on_path
from batchpilot.core.progress import Progress
from batchpilot.core.shell import absolute_source, next_command
from batchpilot.executors.agents import fanout_run
from batchpilot.executors.batch.driver import batch_client, counts_receipt
from batchpilot.executors.batch.rounds import NOTHING_LEFT, drive
from batchpilot.executors.direct.command import direct_unfinished
from batchpilot.executors.direct.executor import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, run_direct
from batchpilot.executors.headless import run_headless
from batchpilot.executors.steps import merge_and_report
from batchpilot.executors.uploads import finish_uploads
from batchpilot.prepare.job import open_job
from batchpilot.prepare.limits import DEFAULT_MAX_ITEM_BYTES
from batchpilot.prepare.plan import recommend
from batchpilot.results.merge import check_formats
from batchpilot.results.selection import DEFAULT_MAX_ROUNDS
from batchpilot.core.files import read_json
from batchpilot.rundir.create import PrepareResult, create_run, default_run_dir, inputs_fingerprint
from batchpilot.rundir.guard import EMULATOR_DIR, bind_emulated, run_is_emulated
from batchpilot.rundir.lock import project_lock, run_lock
from batchpilot.rundir.lookup import find_run, is_finished, job_fingerprint
from batchpilot.rundir.manifest import RUNS_HOME, open_run
from batchpilot.report.markdown import write_report
from batchpilot.prepare.run_estimate import RunEstimate

if TYPE_CHECKING:
    from batchpilot.emulator.config import EmulatorConfig


@dataclass(frozen=True)
class RunOptions:
    """How `run` (and `demo`) execute and finish a prepared run."""

    emulate: bool = False
    no_wait: bool = False
    max_rounds: int | None = None
    max_cost: float | None = None
    parallel: int = 4
    formats: tuple[str, ...] = ()
    pilot: int | None = None  # run this many items through the direct API first (executors.pilot)
    pilot_only: bool = False


def run_job(job_kwargs: dict[str, Any], run_dir: Path | None, mode: str, urgent: bool, needs_tools: bool,
            options: RunOptions, progress: Progress, new: bool = False) -> dict:
    """The `run` receipt: prepare (or resume) the run directory, execute it in `mode` (auto: plan's choice).

    Without `run_dir`, the newest run of the same job under .batchpilot/runs/ (same job fingerprint,
    `rundir.lookup`) is resumed, or reported when it has finished; `new` starts a fresh run regardless. The
    project lock is held from that lookup until the run's own lock is taken, so two `run`s typed at once
    never make two runs (the second meets the first one's run lock).
    """
    if mode == "auto":
        mode = choose_mode(job_kwargs, run_dir, urgent, needs_tools, options.emulate, progress)
    job = open_job(mode=mode, **job_kwargs)
    check_formats(job.template.schema, options.formats)  # `--format sarif` on a schema without lines: before any spend
    if options.pilot and job.upload == "files":  # the pilot's direct requests cannot carry pending upload ids
        raise BatchpilotError("--pilot sends its items through the direct API, which --upload files does not reach",
                              "run the pilot with --upload inline, or drop --pilot")
    with ExitStack() as project:
        target = run_dir
        if target is None:
            project.enter_context(project_lock(RUNS_HOME))
            fingerprint = job_fingerprint(inputs_fingerprint(job.items(), job.settings()), mode)
            job.skipped.clear()  # that read listed the skipped items; create_run's read lists them again
            # A rehearsal and the real job share a fingerprint: each resumes only a run of its own kind, so a
            # real `run` never continues (or reports) an emulated run's placeholders, nor the reverse.
            found = None if new else find_run(RUNS_HOME, fingerprint, accept=lambda d: _same_kind(d, mode, options.emulate))
            found = found.absolute() if found is not None else None  # receipts print paths that work anywhere
            if found is not None and is_finished(found):
                return finished_receipt(found, mode, options, progress)
            if found is not None:
                progress.stage(f"resuming {found}: an unfinished run of this same job (pass --new to start afresh)")
            target = found or default_run_dir(job.template.name)
        progress.stage(f"run directory: {target} (re-run with --run {target} to resume)")
        prepared = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest(),
                              estimate=RunEstimate.for_job(job))
        check_resumed_mode(prepared, target, mode)
        head = {"command": "run", "run": str(prepared.run_dir), "mode": mode, "items": prepared.item_count,
                "resumed": prepared.unchanged,
                # run.json's: made for the job's size, which a resumed run's builder never saw
                "cache": prepared.manifest.get("cache", job.builder.cache_choice)}
        with run_lock(prepared.run_dir):
            project.close()  # the run is ours now: other jobs may choose theirs
            if mode != "agents":  # subagents never talk to an API of ours: nothing to fix for an agents run
                options = replace(options, emulate=bind_emulated(prepared.run_dir, options.emulate))
            return {**head, **execute(prepared.run_dir, mode, options, progress, job_kwargs)}


def execute(run_dir: Path, mode: str, options: RunOptions, progress: Progress, job_kwargs: dict[str, Any]) -> dict:
    """The body of the `run` receipt for a prepared run whose lock is held: the pilot (when asked for, or
    recorded by an earlier `run --pilot`), then the executor of `mode` on the rest."""
    pilot = None
    if options.pilot or (run_dir / "pilot.json").exists():
        pilot = run_pilot(run_dir, mode, options, progress)
        if pilot.stop:
            # The pilot's own merge wrote the report before the pilot was measured: write it again, so the
            # report a user reads before deciding shows the estimate against what the pilot billed.
            write_report(run_dir, progress=progress)
            return {"stopped": f"after the pilot ({pilot.stop})", "pilot": pilot.receipt,
                    "next": rerun_command(job_kwargs, run_dir, mode, options)}
        if not pilot.rest:
            return {"pilot": pilot.receipt, **finish(run_dir, options, progress, {})}
    body = EXECUTORS[mode](run_dir, options, progress)
    return {**body, **({"pilot": pilot.receipt} if pilot else {})}


def rerun_command(job_kwargs: dict[str, Any], run_dir: Path, mode: str, options: RunOptions) -> str:
    """The `run` command that continues this run after its pilot (the pilot is recorded, not repeated).

    The items are named as they were typed: a relative folder or glob spelt absolute gives the items other
    sources, hence other inputs, and the run would refuse them; so such a command first changes to this
    directory (`cd DIR && ...`), which keeps it runnable from anywhere."""
    items = job_kwargs["items_src"]
    words = ["run", "--template", absolute_source(job_kwargs["template_ref"]), "--items", items,
             "--mode", mode, "--run", run_dir]
    for flag, key in (("--model", "model"), ("--max-tokens", "max_tokens"), ("--price-in", "price_in"),
                      ("--price-out", "price_out"), ("--content-field", "content_field"), ("--file-field", "file_field")):
        if job_kwargs.get(key) is not None:
            words += [flag, job_kwargs[key]]
    for flag, key, default in (("--cache", "cache", "auto"), ("--upload", "upload", "auto"),
                               ("--max-item-bytes", "max_item_bytes", DEFAULT_MAX_ITEM_BYTES)):
        if job_kwargs.get(key, default) != default:
            words += [flag, job_kwargs[key]]
    if job_kwargs.get("keep_uploads"):
        words.append("--keep-uploads")
    for name, value in (job_kwargs.get("variables") or {}).items():
        words += ["--var", f"{name}={value}"]
    line = next_command(*words)  # a run remembers whether it is emulated: no --emulate needed
    return line if absolute_source(items) == items else f"cd {shlex.quote(os.getcwd())} && {line}"


def run_pilot(run_dir: Path, mode: str, options: RunOptions, progress: Progress):
    """The pilot step (executors.pilot) on the direct executor; batch mode's first round becomes the rest."""
    from batchpilot.executors.pilot import PILOT_MODES, pilot_step, plan_rest_round

    if mode not in PILOT_MODES:
        raise BatchpilotError(f"--pilot runs through the direct API, then continues in batch or direct mode, not {mode}",
                              "use --mode batch or --mode direct (with --emulate to rehearse for free)")

    def send(target: Path, requests_file: Path) -> None:
        with api_client(options.emulate, async_client=True, max_retries=0) as client:
            receipt = run_direct(target, client, concurrency=DEFAULT_CONCURRENCY, max_cost=options.max_cost,
                                 max_attempts=DEFAULT_MAX_ATTEMPTS, progress=progress, handle_sigint=True,
                                 requests_file=requests_file)
        raise_if_unreachable(receipt["counts"], next_command("run", "--run", target, "--mode", mode))

    def merge(target: Path) -> dict:
        return merge_and_report(target, options.formats, progress)[0]

    outcome = pilot_step(run_dir, options.pilot or 0, mode, options.pilot_only, options.max_cost, send, merge, progress)
    if not outcome.stop and mode == "batch" and outcome.rest:
        plan_rest_round(run_dir)
    return outcome


def _same_kind(run_dir: Path, mode: str, emulate: bool) -> bool:
    """Whether `run` may resume `run_dir`: an agents run, or one not yet bound (emulated or real) otherwise,
    or bound the way this command asks (a run killed before it recorded its answer is still resumed)."""
    if mode == "agents":
        return True
    try:
        manifest = open_run(run_dir)
        if manifest.get("emulated") is None and not (run_dir / EMULATOR_DIR).is_dir():
            return True
        return run_is_emulated(run_dir, manifest) == emulate
    except BatchpilotError:
        return False  # a damaged run is not resumed by default: `--run` names it explicitly


def finished_receipt(run_dir: Path, mode: str, options: RunOptions, progress: Progress) -> dict:
    """The `run` receipt for a job whose identical run has already finished: reported, not paid for again."""
    progress.stage(f"this job already ran in {run_dir} and finished; its results are there "
                   "(pass --new to run it again)")
    summary = read_json(run_dir / "summary.json", "run summary") if (run_dir / "summary.json").is_file() else {}
    counts = summary.get("counts") or {}
    failed = sum(n for status, n in counts.items() if status != "ok")
    return {"command": "run", "run": str(run_dir), "mode": mode, "items": summary.get("items"), "resumed": True,
            "finished": True, "counts": counts, "cost_usd": summary.get("cost_usd"),
            "files": summary.get("files") or {},
            "next": next_command("retry", run_dir) if failed else None}


def choose_mode(job_kwargs: dict[str, Any], run_dir: Path | None, urgent: bool, needs_tools: bool, emulate: bool,
                progress: Progress) -> str:
    """The mode plan recommends for this job (a resumed run keeps the mode it was prepared with).

    With --emulate the job is a rehearsal of the API, so the choice is among the API modes (batch, direct).
    """
    if run_dir is not None and (Path(run_dir) / "run.json").is_file():
        return str(open_run(run_dir).get("mode") or "batch")
    job = open_job(mode="batch", **job_kwargs)
    count = sum(1 for _ in job.items())
    # A rehearsal rehearses the API modes, so it is planned as if a key were set.
    mode, why = recommend(count, needs_tools or job.template.needs_tools, urgent, False,
                          emulate or api_key_present(), claude_on_path())
    if emulate and mode in ("agents", "headless"):
        mode, why = ("direct", "a rehearsal of the urgent path") if urgent else ("batch", "a rehearsal of the half-price path")
        why = f"--emulate rehearses the API modes: {why} (plan recommends agents or headless for the real job)"
    if mode not in EXECUTORS:
        raise BatchpilotError(f"plan recommends {mode}: {why}", "process the items in order yourself, or pick a --mode")
    progress.stage(f"mode {mode}: {why}")
    return mode


def check_resumed_mode(prepared: PrepareResult, target: Path, mode: str) -> None:
    """A resumed run directory runs only in the mode it was prepared for."""
    if prepared.unchanged and prepared.manifest.get("mode") not in (None, mode):
        raise BatchpilotError(f"{target} was prepared for mode {prepared.manifest.get('mode')}, not {mode}",
                              f"re-run with --mode {prepared.manifest.get('mode')}, or pass a new --run directory")


def run_batch(run_dir: Path, options: RunOptions, progress: Progress, emulator_config: EmulatorConfig | None = None) -> dict:
    """Batch mode: submit → wait → fetch → retry rounds → merge → report. Returns the receipt's body."""
    with run_lock(run_dir):
        with batch_client(options.emulate, run_dir, emulator_config) as client:
            try:
                with sdk_errors():
                    outcome = drive(client, run_dir, progress, options.emulate, wait=not options.no_wait,
                                    max_rounds=options.max_rounds or DEFAULT_MAX_ROUNDS)
                uploads = None if outcome.waiting else finish_uploads(
                    client, run_dir, outcome.stopped == NOTHING_LEFT, progress)
            except BatchpilotError:
                if (run_dir / "results.jsonl").exists():
                    merge_and_report(run_dir, options.formats, progress)  # what did finish is still worth reading
                raise
    if outcome.waiting:
        return {**counts_receipt(run_dir), "batch_ids": outcome.submitted,
                "next": next_command("status", run_dir, "--wait")}
    progress.stage(f"batches done: {outcome.stopped}")
    merged, report = merge_and_report(run_dir, options.formats, progress)
    return {**counts_receipt(run_dir), "stopped": outcome.stopped, "counts": merged["counts"],
            **({"uploads": uploads} if uploads else {}),
            "cost_usd": merged.get("cost_usd") or (merged.get("cost") or {}).get("usd"),
            "files": {**merged.get("files", {}), **report},
            "next": next_command("retry", run_dir) if _failed(merged) else None}


def run_direct_mode(run_dir: Path, options: RunOptions, progress: Progress) -> dict:
    """Direct mode: the Messages API at the rate limit, then merge and report."""
    with api_client(options.emulate, async_client=True, max_retries=0) as client:
        receipt = run_direct(run_dir, client, concurrency=DEFAULT_CONCURRENCY, max_cost=options.max_cost,
                             max_attempts=DEFAULT_MAX_ATTEMPTS, progress=progress, handle_sigint=True)
    raise_if_unreachable(receipt["counts"], next_command("direct", run_dir))
    if direct_unfinished(receipt):
        return {"direct": receipt, "next": next_command("direct", run_dir)}
    return finish(run_dir, options, progress, {"direct": receipt})


def run_headless_mode(run_dir: Path, options: RunOptions, progress: Progress) -> dict:
    """Headless mode: `claude -p` subprocesses (pointed at an in-process emulator with --emulate)."""
    with ExitStack() as stack:
        env = None
        if options.emulate:
            # The emulator is imported only for a rehearsal; a real headless run never loads it.
            from batchpilot.emulator.config import EmulatorConfig
            from batchpilot.emulator.http.server import Emulator

            emu = stack.enter_context(Emulator(EmulatorConfig(allow_unknown_models=True)))
            env = {**os.environ, "ANTHROPIC_BASE_URL": emu.base_url, "ANTHROPIC_API_KEY": EMULATOR_KEY}
        receipt = run_headless(run_dir, options.parallel, max_cost=options.max_cost, env=env,
                               progress=lambda done, total: progress.update(done, total, "items"))
        progress.done()
    if receipt.get("stopped"):
        return {"headless": receipt, "next": next_command("headless", run_dir)}
    return finish(run_dir, options, progress, {"headless": receipt})


def run_agents_mode(run_dir: Path, options: RunOptions, progress: Progress) -> dict:
    """Agents mode: write the prompt files and return the first wave; the orchestrating agent takes it from there."""
    receipt = fanout_run(run_dir)
    receipt.pop("command", None)
    receipt.pop("run", None)
    receipt.pop("items", None)
    return receipt


def finish(run_dir: Path, options: RunOptions, progress: Progress, extra: dict) -> dict:
    """Merge and report a run an executor has finished: the rest of the `run` receipt's body."""
    merged, report = merge_and_report(run_dir, options.formats, progress)
    return {**extra, "counts": merged["counts"], "cost_usd": merged.get("cost_usd"),
            "files": {**merged.get("files", {}), **report},
            "next": next_command("retry", run_dir) if _failed(merged) else None}


def _failed(merged: dict) -> int:
    return sum(n for status, n in merged["counts"].items() if status != "ok")


EXECUTORS: dict[str, Callable[..., dict]] = {
    "batch": run_batch, "direct": run_direct_mode, "agents": run_agents_mode, "headless": run_headless_mode,
}
