"""The Message Batches lifecycle commands: `submit`, `status`, `fetch`, `cancel`, and the `batches` listing.

Each one works on a prepared run directory, holds the run's lock while it changes it, journals every remote
side effect, and can be killed and re-run at any point (see batchpilot.executors.batch.state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from batchpilot.cli.options import next_command, quiet

RUN_ARG = click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))


def emulate_option(fn: Callable) -> Callable:
    return click.option("--emulate", is_flag=True,
                        help="Use the local emulator (its state is kept in RUN/emulator/) instead of the API.")(fn)


def _api_errors(fn: Callable[[], Any]) -> Any:
    """Run `fn`, turning SDK exceptions that escaped the core into an Error/Hint."""
    import anthropic

    from batchpilot.api.client import describe_api_error

    try:
        return fn()
    except anthropic.AnthropicError as exc:
        raise describe_api_error(exc) from None


def _next_after_fetch(run_dir: Path) -> str:
    """status while batches are open; retry when the latest round has retryable failures; else merge.
    Judged from the journal's per-batch counts, so it costs nothing on a big run."""
    from batchpilot.executors.batch.state import load_state
    from batchpilot.results.selection import RETRYABLE_ERRORS

    state = load_state(run_dir)
    if state.open_batches() or state.pending():
        return next_command("status", run_dir, "--wait")
    latest = max(state.rounds) if state.rounds else 0
    retryable = 0
    for b in state.batches.values():
        if b.round == latest and b.recorded:
            rec = b.recorded
            retryable += rec.get("missing", 0) + (rec.get("counts") or {}).get("expired", 0)
            retryable += sum(n for t, n in (rec.get("errors") or {}).items() if t in RETRYABLE_ERRORS)
    if retryable and not (state.canceled or state.stopped):
        return next_command("retry", run_dir)
    return next_command("merge", run_dir)


@click.command()
@RUN_ARG
@emulate_option
@click.option("--max-batch-requests", type=click.IntRange(min=1), default=None,
              help="Requests per batch (default: env BATCHPILOT_MAX_BATCH_REQUESTS, else 100000).")
@click.option("--max-batch-bytes", type=click.IntRange(min=1024), default=None,
              help="Body bytes per batch, before a 5% headroom (default: env BATCHPILOT_MAX_BATCH_BYTES, else 256 MB).")
@click.pass_context
def submit(ctx: click.Context, run_dir: Path, emulate: bool, max_batch_requests: int | None, max_batch_bytes: int | None) -> None:
    """Shard the run's requests into Message Batches and create them (each exactly once).

    Example: batchpilot submit .batchpilot/runs/20260101-120000-code-review
    """
    from batchpilot.executors.batch.driver import batch_client, counts_receipt
    from batchpilot.rundir.manifest import require_requests
    from batchpilot.cli.main import emit
    from batchpilot.executors.batch.state import load_state
    from batchpilot.rundir.lock import run_lock
    from batchpilot.core.progress import Progress
    from batchpilot.executors.batch.submit import ensure_first_round, submit_pending

    progress = Progress(quiet(ctx))
    require_requests(run_dir)
    with run_lock(run_dir):
        ensure_first_round(run_dir, load_state(run_dir), max_requests=max_batch_requests, max_bytes=max_batch_bytes)
        with batch_client(emulate, run_dir) as client:
            result = _api_errors(lambda: submit_pending(client, run_dir, progress))
    state = load_state(run_dir)
    emulated = ["--emulate"] if emulate else []
    emit({"command": "submit", "run": str(run_dir), **counts_receipt(run_dir),
          "created": result.created, "reconciled": result.reconciled,
          "batch_ids": [s.batch_id for r in state.rounds.values() for s in r.shards if s.batch_id],
          "pending_shards": result.pending, "blocked": result.blocked,
          "next": next_command("status", run_dir, "--wait", *emulated)})


@click.command()
@RUN_ARG
@emulate_option
@click.option("--wait", is_flag=True, help="Poll until every batch has ended (submitting shards that wait for queue room).")
@click.pass_context
def status(ctx: click.Context, run_dir: Path, emulate: bool, wait: bool) -> None:
    """Show the run's batches: processing, succeeded, errored, expired, canceled.

    Example: batchpilot status .batchpilot/runs/20260101-120000-code-review --wait
    """
    from batchpilot.executors.batch.driver import batch_client, wait_and_fetch
    from batchpilot.rundir.manifest import require_requests
    from batchpilot.cli.main import emit
    from batchpilot.executors.batch.state import load_state
    from batchpilot.rundir.lock import run_lock
    from batchpilot.executors.batch.poll import COUNT_KEYS, Pacer, describe_change, known_snapshot, poll_once, retention_warnings
    from batchpilot.core.progress import Progress

    progress = Progress(quiet(ctx))
    require_requests(run_dir)
    with run_lock(run_dir):
        state = load_state(run_dir)
        if not state.batches and not state.pending():
            from batchpilot.core.errors import BatchpilotError

            raise BatchpilotError(f"{run_dir} has no batches yet", f"submit them: {next_command('submit', run_dir)}")
        snapshot = known_snapshot(state)
        # When every batch has ended the journal knows the final counts: no client, no SDK import, no key needed.
        if state.open_batches() or (wait and state.pending()):
            with batch_client(emulate, run_dir) as client:
                if wait:
                    _api_errors(lambda: wait_and_fetch(client, run_dir, progress, emulate, fetch=False))
                _api_errors(lambda: poll_once(client, run_dir, load_state(run_dir), Pacer(emulate), progress, snapshot,
                                              give_up_after=1))
        state = load_state(run_dir)
    snapshot = _merge_snapshot(known_snapshot(state), snapshot)
    for batch_id, info in snapshot.batches.items():
        progress.stage(describe_change(batch_id, info, len(state.rounds[info["round"]].shards)))
    for warning in retention_warnings(state):
        progress.warn(warning)
    totals = snapshot.totals()
    open_ = [b.id for b in state.open_batches()]
    pending = 0 if (state.canceled or state.stopped) else len(state.pending())
    emulated = ["--emulate"] if emulate else []
    emit({"command": "status", "run": str(run_dir), "rounds": len(state.rounds),
          "batches": [{"id": i, **v} for i, v in snapshot.batches.items()],
          "counts": {k: totals[k] for k in COUNT_KEYS}, "open": len(open_), "pending_shards": pending,
          "ended": not open_ and not pending,
          "next": next_command("status", run_dir, "--wait", *emulated) if open_ or pending
          else next_command("fetch", run_dir, *emulated)})


def _merge_snapshot(journaled: Any, polled: Any) -> Any:
    for batch_id, info in polled.batches.items():
        if journaled.batches.get(batch_id, {}).get("status") != "ended":
            journaled.batches[batch_id] = info
    return journaled


@click.command()
@RUN_ARG
@emulate_option
@click.pass_context
def fetch(ctx: click.Context, run_dir: Path, emulate: bool) -> None:
    """Download the results of every ended batch into results.jsonl (each result exactly once).

    Example: batchpilot fetch .batchpilot/runs/20260101-120000-code-review
    """
    from batchpilot.executors.batch.driver import batch_client
    from batchpilot.rundir.manifest import require_requests
    from batchpilot.cli.main import emit
    from batchpilot.executors.batch.fetch import fetch_ready
    from batchpilot.executors.batch.state import load_state
    from batchpilot.rundir.lock import run_lock
    from batchpilot.executors.batch.poll import Pacer, known_snapshot, poll_once, retention_warnings
    from batchpilot.core.progress import Progress

    progress = Progress(quiet(ctx))
    require_requests(run_dir)
    with run_lock(run_dir):
        state = load_state(run_dir)
        for warning in retention_warnings(state):
            progress.warn(warning)
        with batch_client(emulate, run_dir) as client:
            if state.open_batches():
                _api_errors(lambda: poll_once(client, run_dir, state, Pacer(emulate), progress, known_snapshot(state)))
            done = _api_errors(lambda: fetch_ready(client, run_dir, load_state(run_dir), progress))
        state = load_state(run_dir)
    recorded = [b for b in state.batches.values() if b.recorded]
    counts: dict[str, int] = {}
    for b in recorded:
        for k, v in (b.recorded.get("counts") or {}).items():
            counts[k] = counts.get(k, 0) + v
    emit({"command": "fetch", "run": str(run_dir), "fetched": [d["batch_id"] for d in done],
          "batches_recorded": len(recorded), "batches_open": len(state.open_batches()),
          "counts": counts, "missing": sum(b.recorded.get("missing", 0) for b in recorded),
          "results": str(run_dir / "results.jsonl"), "next": _next_after_fetch(run_dir)})


@click.command()
@RUN_ARG
@emulate_option
@click.pass_context
def cancel(ctx: click.Context, run_dir: Path, emulate: bool) -> None:
    """Cancel the run's open batches, wait for them to end, and fetch what finished (successes are kept).

    Example: batchpilot cancel .batchpilot/runs/20260101-120000-code-review
    """
    import anthropic

    from batchpilot.core import crash
    from batchpilot.executors.batch.driver import batch_client, counts_receipt, wait_and_fetch
    from batchpilot.rundir.manifest import require_requests
    from batchpilot.cli.main import emit
    from batchpilot.executors.batch.state import load_state, record
    from batchpilot.rundir.lock import run_lock
    from batchpilot.core.progress import Progress

    progress = Progress(quiet(ctx))
    require_requests(run_dir)
    canceled = []
    with run_lock(run_dir):
        state = load_state(run_dir)
        record(run_dir, "job_canceled", batches=[b.id for b in state.open_batches()])
        with batch_client(emulate, run_dir) as client:
            for batch in state.open_batches():
                if batch.cancel_requested:
                    continue
                try:
                    client.messages.batches.cancel(batch.id)
                except anthropic.BadRequestError:
                    pass  # it ended meanwhile; the poll below sees that
                except anthropic.AnthropicError as exc:
                    from batchpilot.api.client import describe_api_error

                    raise describe_api_error(exc) from None
                crash.point("after-cancel-before-journal")
                record(run_dir, "cancel_requested", batch_id=batch.id)
                canceled.append(batch.id)
                progress.stage(f"cancel requested for {batch.id}")
            _api_errors(lambda: wait_and_fetch(client, run_dir, progress, emulate))
    emit({"command": "cancel", "run": str(run_dir), "canceled": canceled, **counts_receipt(run_dir),
          "results": str(run_dir / "results.jsonl"), "next": next_command("merge", run_dir)})


@click.command()
@emulate_option
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --emulate: list the batches of this run's emulator.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many (newest first).")
@click.pass_context
def batches(ctx: click.Context, emulate: bool, run_dir: Path | None, limit: int) -> None:
    """List the account's newest batches and the run each belongs to (runs under .batchpilot/runs/).

    Example: batchpilot batches --limit 50
    """
    from batchpilot.executors.batch.driver import batch_client
    from batchpilot.cli.main import emit
    from batchpilot.core.files import iter_jsonl
    from batchpilot.rundir.create import RUNS_HOME

    owners: dict[str, str] = {}
    dirs = list(RUNS_HOME.glob("*")) + ([run_dir] if run_dir else [])
    for run in dirs:
        for ev in iter_jsonl(Path(run) / "journal.jsonl"):
            if ev.get("event") == "batch_created":
                owners[ev["batch_id"]] = str(run)
    rows = []
    with batch_client(emulate, run_dir if emulate else None) as client:
        page = _api_errors(lambda: client.messages.batches.list(limit=limit))
        for b in page.data[:limit]:
            c = b.request_counts
            rows.append({"id": b.id, "status": b.processing_status, "created_at": b.created_at.isoformat(),
                         "counts": {"processing": c.processing, "succeeded": c.succeeded, "errored": c.errored,
                                    "canceled": c.canceled, "expired": c.expired},
                         "run": owners.get(b.id)})
    emit({"command": "batches", "batches": rows, "next": None})
