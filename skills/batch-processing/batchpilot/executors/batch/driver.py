"""The batch executor's wait loop: submit what fits, poll, fetch what ended, until nothing is open.

`wait_and_fetch` polls the run's open batches (`poll.py`), submits shards that were waiting for room in the
processing queue as earlier batches end (`submit.py`), and fetches each batch as soon as it ends
(`fetch.py`): results are downloaded at once, never left to the 29-day limit. Retry rounds around it are
`rounds.py`. Every decision is recomputed from the journal, so a process killed anywhere resumes by running
the same command again.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from batchpilot.core.files import safe_dir
from batchpilot.api.client import api_client
from batchpilot.core.progress import Progress
from batchpilot.executors.batch.fetch import fetch_ready
from batchpilot.executors.batch.poll import Backoff, Pacer, describe_change, describe_totals, known_snapshot, poll_once
from batchpilot.executors.batch.state import load_state
from batchpilot.executors.batch.submit import ensure_first_round, submit_pending
from batchpilot.executors.uploads import ensure_uploads

EMULATOR_DIR = "emulator"


@contextmanager
def batch_client(emulate: bool, run_dir: Path | None = None, emulator_config: Any = None) -> Iterator[Any]:
    """An SDK client for the API, or for an emulator whose account persists in `<run>/emulator/`."""
    if emulate and emulator_config is None:
        from batchpilot.emulator.config import EmulatorConfig  # the emulator is loaded only for a rehearsal

        data_dir = safe_dir(Path(run_dir), EMULATOR_DIR) if run_dir is not None else None
        emulator_config = EmulatorConfig(data_dir=str(data_dir) if data_dir else None, persist=data_dir is not None)
    with api_client(emulate, emulator_config=emulator_config) as client:
        yield client


def submit_step(client: Any, run_dir: Path, progress: Progress) -> Any:
    """Upload a --upload files run's files, plan round 1 if needed, and submit every pending shard the API takes now."""
    ensure_uploads(client, run_dir, progress)
    ensure_first_round(run_dir, load_state(run_dir))
    return submit_pending(client, run_dir, progress)


def wait_and_fetch(client: Any, run_dir: Path, progress: Progress, emulate: bool, fetch: bool = True) -> None:
    """Until no batch is open and no shard pending: submit what fits, poll, fetch what ended."""
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


def counts_receipt(run_dir: Path) -> dict:
    """Request counts over all batches of the run, and per round, from the journal."""
    state = load_state(run_dir)
    total: dict[str, int] = {}
    for b in state.batches.values():
        counts = (b.recorded or {}).get("counts") or (b.ended or {}).get("request_counts") or {"processing": b.requests}
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return {"rounds": len(state.rounds), "batches": len(state.batches), "counts": total}
