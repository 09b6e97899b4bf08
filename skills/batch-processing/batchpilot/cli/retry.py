"""`retry`: re-run only the items whose latest outcome a retry can fix, as new Message Batches rounds or
one round through the Messages API; invalid answers are re-asked with the validator's message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batchpilot.cli.options import next_command, quiet
from batchpilot.cli.batch import RUN_ARG, _api_errors, emulate_option

RETRY_MODES = ("batch", "direct")


@click.command()
@RUN_ARG
@emulate_option
@click.option("--only", "only", default=None, metavar="TYPES",
              help="Comma-separated: invalid (answers that failed the schema: re-asked with the previous answer and "
                   "the validator's message; cut-off answers get max_tokens doubled), retryable (retryable errors, "
                   "expired, missing), expired, missing, canceled, errored, or an error type such as "
                   "overloaded_error. [default: retryable,invalid]")
@click.option("--mode", type=click.Choice(RETRY_MODES), default=None,
              help="batch: new Message Batches rounds (50% price); direct: one round through the Messages API now. "
                   "[default: the mode the run was prepared for, batch unless direct]")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None,
              help="Batch mode: stop once the run has this many rounds, counting the first submission. [4]")
@click.option("--no-wait", is_flag=True, help="Batch mode: submit one retry round and return; follow with `status --wait`.")
@click.pass_context
def retry(ctx: click.Context, run_dir: Path, emulate: bool, only: str | None, mode: str | None, max_rounds: int | None,
          no_wait: bool) -> None:
    """Re-run the items that failed retryably or answered invalid JSON (same custom_ids), round after round while it helps.

    Example: batchpilot retry .batchpilot/runs/20260101-120000-code-review --only invalid,expired
    """
    from batchpilot.rundir.manifest import require_requests
    from batchpilot.core.progress import Progress
    from batchpilot.results.selection import parse_only

    progress = Progress(quiet(ctx))
    selection = parse_only(only)
    manifest = require_requests(run_dir)
    mode = mode or ("direct" if manifest.get("mode") == "direct" else "batch")
    if mode == "direct":
        _retry_direct(run_dir, emulate, selection, progress)
    else:
        _retry_batch(run_dir, emulate, selection, max_rounds, no_wait, progress)


def _journal_length(run_dir: Path) -> int:
    from batchpilot.rundir.journal import iter_journal

    return sum(1 for _ in iter_journal(run_dir))


def _repairs(run_dir: Path, since: int) -> dict[str, int]:
    """How the invalid items of the rounds planned after journal event `since` were re-asked."""
    from itertools import islice

    from batchpilot.rundir.journal import iter_journal

    total: dict[str, int] = {}
    for ev in islice(iter_journal(run_dir), since, None):
        if ev.get("event") == "round_rewritten":
            for how, n in (ev.get("how") or {}).items():
                total[how] = total.get(how, 0) + n
    return total


def _describe_repairs(repairs: dict[str, int]) -> str | None:
    words = {"feedback": "re-asked with their answer and the validator's message",
             "max_tokens": "cut off at max_tokens, re-asked with max_tokens doubled",
             "resend": "refused or empty, re-asked unchanged"}
    parts = [f"{n} {words.get(how, how)}" for how, n in sorted(repairs.items()) if n]
    return f"invalid items: {'; '.join(parts)}" if parts else None


def _retry_batch(run_dir: Path, emulate: bool, selection: frozenset[str], max_rounds: int | None, no_wait: bool,
                 progress: Any) -> None:
    from batchpilot.executors.batch.driver import batch_client, counts_receipt, drive
    from batchpilot.cli.main import emit
    from batchpilot.core.errors import BatchpilotError
    from batchpilot.executors.batch.state import load_state, record
    from batchpilot.rundir.lock import run_lock
    from batchpilot.results.selection import DEFAULT_MAX_ROUNDS

    with run_lock(run_dir):
        state = load_state(run_dir)
        if not state.rounds:
            raise BatchpilotError(f"{run_dir} has not been submitted yet",
                                  f"submit it first: {next_command('submit', run_dir)}, or retry with --mode direct")
        if state.canceled or state.stopped:
            record(run_dir, "job_resumed")  # an explicit retry lifts a cancel or an account stop
        limit = max_rounds or max(DEFAULT_MAX_ROUNDS, max(state.rounds) + 1)
        since = _journal_length(run_dir)
        with batch_client(emulate, run_dir) as client:
            outcome = _api_errors(lambda: drive(client, run_dir, progress, emulate, wait=not no_wait,
                                                selection=selection, max_rounds=limit, force_first=True))
        repairs = _repairs(run_dir, since)
    emulated = ["--emulate"] if emulate else []
    described = _describe_repairs(repairs)
    if described:
        progress.stage(described)
    progress.stage(f"retry: {outcome.stopped}")
    emit({"command": "retry", "run": str(run_dir), "mode": "batch", **counts_receipt(run_dir), "stopped": outcome.stopped,
          "items": outcome.classification, "repairs": repairs, "submitted": outcome.submitted,
          "next": next_command("status", run_dir, "--wait", *emulated) if outcome.waiting else next_command("merge", run_dir)})


def _retry_direct(run_dir: Path, emulate: bool, selection: frozenset[str], progress: Any) -> None:
    """One round: write rounds/direct-N.jsonl (repaired lines for invalid items) and send it through the
    direct executor. Re-running selects again from results.jsonl, so a killed round resumes without resending
    what it already fixed."""
    from batchpilot.api.client import api_client
    from batchpilot.cli.main import emit
    from batchpilot.executors.direct.executor import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, run_direct
    from batchpilot.rundir.lock import run_lock
    from batchpilot.results.selection import classify, write_round_file

    with run_lock(run_dir):
        found = classify(run_dir, selection)
        if not found.selected:
            progress.stage("retry: nothing left to retry")
            emit({"command": "retry", "run": str(run_dir), "mode": "direct", "stopped": "nothing left to retry",
                  "items": dict(found.counts), "selected": {}, "repairs": {}, "direct": None,
                  "next": next_command("merge", run_dir)})
            return
        by: dict[str, int] = {}
        for category in found.selected.values():
            by[category] = by.get(category, 0) + 1
        number = 1 + len(list((Path(run_dir) / "rounds").glob("direct-*.jsonl")))
        since = _journal_length(run_dir)
        source = write_round_file(run_dir, number, found.selected, prefix="direct")
        repairs = _repairs(run_dir, since)
        progress.stage(f"retry: {len(found.selected)} item(s) through the Messages API "
                       f"({', '.join(f'{n} {k}' for k, n in sorted(by.items()))}) from {source}")
        described = _describe_repairs(repairs)
        if described:
            progress.stage(described)
        with api_client(emulate, async_client=True, max_retries=0) as client:
            receipt = run_direct(run_dir, client, concurrency=DEFAULT_CONCURRENCY, max_attempts=DEFAULT_MAX_ATTEMPTS,
                                 progress=progress, handle_sigint=True, requests_file=Path(run_dir) / source)
    emulated = ["--emulate"] if emulate else []
    unfinished = receipt.get("stopped") in ("interrupted", "max_cost") or receipt["counts"].get("not_run")
    emit({"command": "retry", "run": str(run_dir), "mode": "direct", "stopped": receipt.get("stopped") or "round done",
          "items": dict(found.counts), "selected": by, "repairs": repairs, "source": source, "direct": receipt,
          "next": next_command("retry", run_dir, "--mode", "direct", *emulated) if unfinished else next_command("merge", run_dir)})
