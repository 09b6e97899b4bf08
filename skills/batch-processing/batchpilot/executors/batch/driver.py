"""The batch executor's main loop: submit → wait → fetch → retry rounds, each step resumable from the journal.

    with batch_client(emulate, run_dir) as client:
        outcome = drive(client, run_dir, progress, emulate=emulate)

`wait_and_fetch` polls the run's open batches (`poll.py`), submits shards that were waiting for room in the
processing queue as earlier batches end, and fetches each batch as soon as it ends (`fetch.py`): results
are downloaded at once, never left to the 29-day limit. `drive` then decides about a retry round
(`results/selection.py`) and loops. Every decision is recomputed from the journal and results.jsonl, so a process
killed anywhere resumes by running the same command again.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from batchpilot.api.failures import account_error
from batchpilot.executors.batch.state import load_state, record, round_refusal
from batchpilot.core.progress import Progress
from batchpilot.core.shell import next_command
from batchpilot.results.selection import DEFAULT_MAX_ROUNDS, DEFAULT_SELECTION, classify, write_round_file

EMULATOR_DIR = "emulator"


@contextmanager
def batch_client(emulate: bool, run_dir: Path | None = None, emulator_config: Any = None) -> Iterator[Any]:
    """An SDK client for the API, or for an emulator whose account persists in `<run>/emulator/`."""
    from batchpilot.api.client import api_client

    if emulate and emulator_config is None:
        from batchpilot.emulator.config import EmulatorConfig

        data_dir = Path(run_dir) / EMULATOR_DIR if run_dir is not None else None
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        emulator_config = EmulatorConfig(data_dir=str(data_dir) if data_dir else None, persist=data_dir is not None)
    with api_client(emulate, emulator_config=emulator_config) as client:
        yield client


@dataclass
class Outcome:
    """Where a drive stopped, and why."""

    rounds: int = 0
    stopped: str = ""
    waiting: bool = False  # returned early (--no-wait): batches still open
    classification: dict = field(default_factory=dict)
    submitted: list[str] = field(default_factory=list)


def submit_step(client: Any, run_dir: Path, progress: Progress) -> Any:
    """Plan round 1 if needed and submit every pending shard the API takes now."""
    from batchpilot.executors.batch.submit import ensure_first_round, submit_pending

    ensure_first_round(run_dir, load_state(run_dir))
    return submit_pending(client, run_dir, progress)


def wait_and_fetch(client: Any, run_dir: Path, progress: Progress, emulate: bool, fetch: bool = True) -> None:
    """Until no batch is open and no shard pending: submit what fits, poll, fetch what ended."""
    from batchpilot.executors.batch.fetch import fetch_ready
    from batchpilot.executors.batch.poll import Backoff, Pacer, describe_change, describe_totals, known_snapshot, poll_once
    from batchpilot.executors.batch.submit import submit_pending

    pacer, backoff = Pacer(emulate), Backoff(emulate)
    started = time.monotonic()
    state = load_state(run_dir)
    snapshot = known_snapshot(state)
    blocked_at = -1  # number of ended batches when a create was last refused
    while True:
        state = load_state(run_dir)
        ended = sum(1 for b in state.batches.values() if b.ended)
        if state.pending() and not (state.canceled or state.stopped) and ended != blocked_at:
            result = submit_pending(client, run_dir, progress)
            blocked_at = ended if result.blocked else -1
            if result.blocked:
                progress.stage(f"{result.pending} shard(s) wait for room in the processing queue: {result.blocked}")
            state = load_state(run_dir)
            for batch_id in state.batches:
                snapshot.batches.setdefault(batch_id, known_snapshot(state).batches[batch_id])
        changed = poll_once(client, run_dir, state, pacer, progress, snapshot)
        for batch_id in changed:
            info = snapshot.batches[batch_id]
            progress.stage(describe_change(batch_id, info, len(state.rounds[info["round"]].shards)))
        if fetch:
            fetch_ready(client, run_dir, load_state(run_dir), progress)
        state = load_state(run_dir)
        pending = 0 if (state.canceled or state.stopped) else len(state.pending())
        if changed:
            progress.stage(describe_totals(snapshot, started, pending, max(state.rounds)))
        if not state.open_batches() and not pending and not (fetch and state.unrecorded()):
            return
        if state.pending() and not state.open_batches() and blocked_at >= 0:
            # Refused with nothing of ours in the queue: someone else's batches fill it. Wait and try again.
            blocked_at = -1
            time.sleep(backoff.high)
        backoff.sleep()


def drive(client: Any, run_dir: Path, progress: Progress, emulate: bool, wait: bool = True,
          selection: frozenset[str] = DEFAULT_SELECTION, max_rounds: int = DEFAULT_MAX_ROUNDS,
          force_first: bool = False) -> Outcome:
    """Run the job to its end: submit, wait, fetch, and retry rounds while they help."""
    run_dir = Path(run_dir)
    out = Outcome()
    first = True
    state = load_state(run_dir)
    if force_first and state.rounds and not state.round_done(max(state.rounds)):
        # A retry re-run after a kill finds the round it planned unfinished: it resumes that round rather
        # than forcing one more (the killed run's forced round is this one), as an uninterrupted retry would.
        force_first = False
    while True:
        result = submit_step(client, run_dir, progress)
        out.submitted += result.created + result.reconciled
        if not wait:
            state = load_state(run_dir)
            out.rounds, out.waiting, out.stopped = max(state.rounds), True, "not waiting (--no-wait)"
            return out
        wait_and_fetch(client, run_dir, progress, emulate)
        state = load_state(run_dir)
        current = max(state.rounds)
        out.rounds = current
        if state.stopped:
            raise account_error(state.stopped.get("error_type", "error"), state.stopped.get("message", ""),
                                _resume_after_stop(run_dir))
        # An explicit retry after an account stop means "fixed it": judge only the rounds it submits.
        failure = None if (force_first and first) else round_refusal(state, current)
        if failure:
            record(run_dir, "job_stopped", reason="account", error_type=failure[0], message=failure[1])
            raise account_error(*failure, _resume_after_stop(run_dir))
        if state.canceled:
            out.stopped = "the job was canceled"
            break
        if not state.round_done(current):
            out.stopped = f"round {current} is not finished"
            break
        found = classify(run_dir, selection)
        out.classification = dict(found.counts)
        progress_made = found.ok - state.rounds[current].ok_before
        if not found.selected:
            out.stopped = "nothing left to retry"
            break
        if current >= max_rounds:
            out.stopped = f"round limit reached ({max_rounds} rounds)"
            break
        if current >= 2 and progress_made <= 0 and not (force_first and first):
            out.stopped = f"round {current} made no progress"
            break
        first = False
        by = {}
        for category in found.selected.values():
            by[category] = by.get(category, 0) + 1
        source = write_round_file(run_dir, current + 1, found.selected)
        from batchpilot.executors.batch.submit import plan_round

        plan_round(run_dir, current + 1, source, ok_before=found.ok, selected=by)
        progress.stage(f"round {current + 1}: retrying {len(found.selected)} item(s) "
                       f"({', '.join(f'{n} {k}' for k, n in sorted(by.items()))})")
    return out


def counts_receipt(run_dir: Path) -> dict:
    """Request counts over all batches of the run, and per round, from the journal."""
    state = load_state(run_dir)
    total: dict[str, int] = {}
    for b in state.batches.values():
        counts = (b.recorded or {}).get("counts") or (b.ended or {}).get("request_counts") or {"processing": b.requests}
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return {"rounds": len(state.rounds), "batches": len(state.batches), "counts": total}


def _resume_after_stop(run_dir: Path) -> str:
    # After an account stop only an explicit retry of the errored items goes on (it lifts the stop).
    return next_command("retry", run_dir, "--only", "errored")
