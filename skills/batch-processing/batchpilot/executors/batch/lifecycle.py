"""The Message Batches lifecycle as whole commands: `submit`, `status`, `fetch`, `cancel`, and `batches`.

Each function works on a prepared run directory, holds the run's lock while it changes it, journals every
remote side effect (through the submit, poll and fetch steps), and can be killed and re-run at any point
(see `state.py`). Each returns its command's receipt; the CLI prints it. SDK exceptions that escape the
steps end as an Error/Hint (`sdk_errors`).
"""

from __future__ import annotations

from contextlib import nullcontext as _nullcontext
from pathlib import Path
from typing import Any

from batchpilot.api.client import sdk_errors
from batchpilot.api.failures import RETRYABLE_ERRORS
from batchpilot.core import crash
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import iter_jsonl
from batchpilot.core.progress import Progress
from batchpilot.core.shell import next_command
from batchpilot.executors.batch.driver import batch_client, counts_receipt, wait_and_fetch
from batchpilot.executors.batch.fetch import fetch_ready
from batchpilot.executors.batch.poll import (COUNT_KEYS, Pacer, Snapshot, describe_change, known_snapshot, poll_once,
                                             retention_warnings)
from batchpilot.executors.batch.state import load_state, record
from batchpilot.executors.batch.submit import ensure_first_round, submit_pending
from batchpilot.executors.uploads import ensure_uploads, finish_uploads, uses_uploads
from batchpilot.results.selection import DEFAULT_SELECTION, classify
from batchpilot.rundir.lock import lock_holder, run_lock, try_run_lock
from batchpilot.rundir.guard import bind_emulated, require_mode
from batchpilot.rundir.manifest import RUNS_HOME, require_requests


def batch_target(run_dir: Path, command: str, emulate: bool) -> bool:
    """Refuse a run of another mode (unless it already has batch rounds); whether it runs on the emulator."""
    require_requests(run_dir)
    require_mode(run_dir, command, ("batch",), switched=bool(load_state(run_dir).rounds))
    return bind_emulated(run_dir, emulate)


def submit_job(run_dir: Path, emulate: bool, max_batch_requests: int | None, max_batch_bytes: int | None,
               progress: Progress) -> dict:
    """The `submit` receipt: the run's requests sharded into Message Batches, each created exactly once."""
    emulate = batch_target(run_dir, "submit", emulate)
    with run_lock(run_dir):
        with batch_client(emulate, run_dir) as client, sdk_errors():
            ensure_uploads(client, run_dir, progress)  # a --upload files run: its files first, then its shards
            ensure_first_round(run_dir, load_state(run_dir), max_requests=max_batch_requests, max_bytes=max_batch_bytes)
            result = submit_pending(client, run_dir, progress)
    state = load_state(run_dir)
    return {"command": "submit", "run": str(run_dir), **counts_receipt(run_dir),
            "created": result.created, "reconciled": result.reconciled,
            "batch_ids": [s.batch_id for r in state.rounds.values() for s in r.shards if s.batch_id],
            "pending_shards": result.pending, "blocked": result.blocked,
            "next": next_command("status", run_dir, "--wait")}


def status_job(run_dir: Path, emulate: bool, wait: bool, progress: Progress) -> dict:
    """The `status` receipt: the run's batches and their counts (with `wait`, once every batch has ended).

    `status --wait` polls and journals, so it is a writer and takes the run lock. Plain `status` polls only
    when nobody else holds the lock; while a writer works it answers from the journal and never fails.
    """
    emulate = batch_target(run_dir, "status", emulate)
    busy: dict | None = None
    with (run_lock(run_dir) if wait else _nullcontext(True)), try_run_lock(run_dir) as held:
        state = load_state(run_dir)
        if not state.batches and not state.pending():
            raise BatchpilotError(f"{run_dir} has no batches yet", f"submit it: {next_command('submit', run_dir)}")
        snapshot = known_snapshot(state)
        if not held:
            busy = lock_holder(run_dir)
            progress.stage(f"pid {busy.get('pid', '?')} (`{busy.get('command', '?')}`) is working on this run; "
                           "these counts are from its journal")
        # When every batch has ended the journal knows the final counts: no client, no SDK import, no key needed.
        elif state.open_batches() or (wait and state.pending()):
            with batch_client(emulate, run_dir) as client, sdk_errors():
                if wait:
                    wait_and_fetch(client, run_dir, progress, emulate, fetch=False)
                poll_once(client, run_dir, load_state(run_dir), Pacer(emulate), progress, snapshot, give_up_after=1)
        state = load_state(run_dir)
    snapshot = merge_snapshot(known_snapshot(state), snapshot)
    for batch_id, info in snapshot.batches.items():
        progress.stage(describe_change(batch_id, info, len(state.rounds[info["round"]].shards)))
    for warning in retention_warnings(state):
        progress.warn(warning)
    totals = snapshot.totals()
    open_ = [b.id for b in state.open_batches()]
    pending = 0 if (state.canceled or state.stopped) else len(state.pending())
    return {"command": "status", "run": str(run_dir), "rounds": len(state.rounds),
            "batches": [{"id": i, **v} for i, v in snapshot.batches.items()],
            "counts": {k: totals[k] for k in COUNT_KEYS}, "open": len(open_), "pending_shards": pending,
            "ended": not open_ and not pending,
            "next": next_command("status", run_dir, "--wait") if open_ or pending
            else next_command("fetch", run_dir),
            **({"locked_by": {k: busy.get(k) for k in ("pid", "command", "since")}} if busy is not None else {})}


def merge_snapshot(journaled: Snapshot, polled: Snapshot) -> Snapshot:
    """The journal's view of the batches, with what this poll saw for each batch the journal has not seen end."""
    for batch_id, info in polled.batches.items():
        if journaled.batches.get(batch_id, {}).get("status") != "ended":
            journaled.batches[batch_id] = info
    return journaled


def fetch_job(run_dir: Path, emulate: bool, progress: Progress) -> dict:
    """The `fetch` receipt: every ended batch's results downloaded into results.jsonl, each exactly once."""
    emulate = batch_target(run_dir, "fetch", emulate)
    with run_lock(run_dir):
        state = load_state(run_dir)
        for warning in retention_warnings(state):
            progress.warn(warning)
        with batch_client(emulate, run_dir) as client, sdk_errors():
            if state.open_batches():
                poll_once(client, run_dir, state, Pacer(emulate), progress, known_snapshot(state))
            done = fetch_ready(client, run_dir, load_state(run_dir), progress)
            # A --upload files job that this fetch ended deletes its uploads (the other runs skip the check).
            uploads = finish_uploads(client, run_dir, job_ended(run_dir), progress) if uses_uploads(run_dir) else None
        state = load_state(run_dir)
    recorded = [b for b in state.batches.values() if b.recorded]
    counts: dict[str, int] = {}
    for b in recorded:
        for k, v in (b.recorded.get("counts") or {}).items():
            counts[k] = counts.get(k, 0) + v
    return {"command": "fetch", "run": str(run_dir), "fetched": [d["batch_id"] for d in done],
            "batches_recorded": len(recorded), "batches_open": len(state.open_batches()),
            "counts": counts, "missing": sum(b.recorded.get("missing", 0) for b in recorded),
            "results": str(run_dir / "results.jsonl"), **({"uploads": uploads} if uploads else {}),
            "next": next_after_fetch(run_dir)}


def job_ended(run_dir: Path) -> bool:
    """No batch open or shard pending, and nothing a default `retry` would select: the job is over."""
    state = load_state(run_dir)
    if state.open_batches() or state.pending() or not state.rounds:
        return False
    return not classify(run_dir, DEFAULT_SELECTION).selected


def next_after_fetch(run_dir: Path) -> str:
    """status while batches are open; retry when the latest round has retryable failures; else merge.
    Judged from the journal's per-batch counts, so it costs nothing on a big run."""
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


def cancel_job(run_dir: Path, emulate: bool, progress: Progress) -> dict:
    """The `cancel` receipt: the run's open batches canceled, waited for, and what finished fetched."""
    import anthropic  # cancel always calls the API; the SDK stays off the path of the commands that do not

    emulate = batch_target(run_dir, "cancel", emulate)
    canceled = []
    with run_lock(run_dir):
        state = load_state(run_dir)
        record(run_dir, "job_canceled", batches=[b.id for b in state.open_batches()])
        with batch_client(emulate, run_dir) as client, sdk_errors():
            for batch in state.open_batches():
                if batch.cancel_requested:
                    continue
                try:
                    client.messages.batches.cancel(batch.id)
                except anthropic.BadRequestError:
                    pass  # it ended meanwhile; the poll below sees that
                crash.point("after-cancel-before-journal")
                record(run_dir, "cancel_requested", batch_id=batch.id)
                canceled.append(batch.id)
                progress.stage(f"cancel requested for {batch.id}")
            wait_and_fetch(client, run_dir, progress, emulate)
    return {"command": "cancel", "run": str(run_dir), "canceled": canceled, **counts_receipt(run_dir),
            "results": str(run_dir / "results.jsonl"), "next": next_command("merge", run_dir)}


def batch_owners(run_dir: Path | None = None) -> dict[str, str]:
    """Batch id → the run that created it, from the journals of the runs under .batchpilot/runs/ (and `run_dir`)."""
    owners: dict[str, str] = {}
    dirs = list(RUNS_HOME.glob("*")) + ([run_dir] if run_dir else [])
    for run in dirs:
        for ev in iter_jsonl(Path(run) / "journal.jsonl"):
            if ev.get("event") == "batch_created":
                owners[ev["batch_id"]] = str(run)
    return owners


def list_batches(emulate: bool, run_dir: Path | None, limit: int) -> dict:
    """The `batches` receipt: the account's newest batches (with `emulate`, those of `run_dir`'s emulator)."""
    owners = batch_owners(run_dir)
    rows: list[dict[str, Any]] = []
    with batch_client(emulate, run_dir if emulate else None) as client:
        with sdk_errors():
            page = client.messages.batches.list(limit=limit)
        for b in page.data[:limit]:
            c = b.request_counts
            rows.append({"id": b.id, "status": b.processing_status, "created_at": b.created_at.isoformat(),
                         "counts": {"processing": c.processing, "succeeded": c.succeeded, "errored": c.errored,
                                    "canceled": c.canceled, "expired": c.expired},
                         "run": owners.get(b.id)})
    return {"command": "batches", "batches": rows, "next": None}
