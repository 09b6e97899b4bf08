"""Polling a run's open batches: paced below the batch endpoints' rate limit, tolerant of the API's early 404s.

`poll_once` retrieves every open batch once and journals `batch_ended` the first time one has ended. Calls
go through a `Pacer` that keeps them at most `BATCHPILOT_BATCH_RPM` per minute (default 50, the lowest
tier's batch RPM, so any account is safe; 60,000 against the emulator). A 404 within `NOT_FOUND_GRACE` of a batch's creation is the
API's known propagation delay (anthropic-sdk-python#1432) and only skips that batch for this pass.
`Backoff` spaces whole passes: `BATCHPILOT_POLL_MIN` doubling-ish up to `BATCHPILOT_POLL_MAX` seconds
(10 → 60 against the API, 0.1 → 1 against the emulator).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from batchpilot.api.client import describe_api_error, shown_base_url
from batchpilot.core.errors import BatchpilotError
from batchpilot.executors.batch.state import BatchState, RunState, record
from batchpilot.core.progress import Progress

NOT_FOUND_GRACE = timedelta(minutes=10)
UNREACHABLE_POLLS = 6  # consecutive polls that reach nothing before `status --wait` gives up
RETENTION_WARN = timedelta(days=25)  # results are deleted 29 days after created_at
COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")
DEFAULT_BATCH_RPM = 50
EMULATOR_BATCH_RPM = 60_000


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise BatchpilotError(f"{name}={raw!r} is not a number", f"unset {name} or give a number") from None


class Pacer:
    """At most `rpm` calls a minute, evenly spaced (the batch endpoints share one RPM budget)."""

    def __init__(self, emulate: bool = False):
        rpm = _env_float("BATCHPILOT_BATCH_RPM", EMULATOR_BATCH_RPM if emulate else DEFAULT_BATCH_RPM)
        self.gap = 60.0 / max(rpm, 1e-6)
        self._next = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + self.gap


class Backoff:
    """Seconds between polling passes: grows 1.5x from `low` to `high`."""

    def __init__(self, emulate: bool):
        self.low = _env_float("BATCHPILOT_POLL_MIN", 0.1 if emulate else 10.0)
        self.high = max(self.low, _env_float("BATCHPILOT_POLL_MAX", 1.0 if emulate else 60.0))
        self.current = self.low

    def sleep(self) -> None:
        time.sleep(self.current)
        self.current = min(self.high, self.current * 1.5)

    def reset(self) -> None:
        self.current = self.low


@dataclass
class Snapshot:
    """The latest known state of each batch of a run: status and request counts."""

    batches: dict[str, dict] = field(default_factory=dict)  # id -> {status, counts, round, shard}
    unreachable: int = 0  # consecutive polls in which no retrieve could connect

    def totals(self, round_: int | None = None) -> dict[str, int]:
        out = dict.fromkeys(COUNT_KEYS, 0)
        for info in self.batches.values():
            if round_ is not None and info["round"] != round_:
                continue
            for k in COUNT_KEYS:
                out[k] += info["counts"].get(k, 0)
        return out


def known_snapshot(state: RunState) -> Snapshot:
    """What the journal alone says (ended batches' final counts, open ones as processing)."""
    snap = Snapshot()
    for b in state.batches.values():
        if b.ended:
            snap.batches[b.id] = {"status": "ended", "counts": b.ended["request_counts"], "round": b.round, "shard": b.shard}
        else:
            snap.batches[b.id] = {"status": "in_progress", "counts": {"processing": b.requests}, "round": b.round,
                                  "shard": b.shard}
    return snap


def poll_once(client: Any, run_dir: Path, state: RunState, pacer: Pacer, progress: Progress,
              snapshot: Snapshot, give_up_after: int = UNREACHABLE_POLLS) -> list[str]:
    """Retrieve every open batch; journal the ones that ended. Returns the ids whose status or counts changed.

    A poll in which no retrieve could connect is tolerated `give_up_after - 1` times in a row (a network blip);
    then it is an error: waiting on an API that cannot be reached would never end.
    """
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    changed = []
    open_batches = state.open_batches()
    failed = 0
    for batch in open_batches:
        pacer.wait()
        try:
            remote = client.messages.batches.retrieve(batch.id)
        except anthropic.NotFoundError:
            if _age(batch) is not None and _age(batch) < NOT_FOUND_GRACE:
                continue  # the API's propagation delay right after create
            raise BatchpilotError(f"batch {batch.id} (round {batch.round}, shard {batch.shard}) is not found on this account",
                                  "it was deleted, or the key belongs to another workspace; with --emulate, keep using "
                                  "--emulate for this run") from None
        except anthropic.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code == 429:
                progress.warn(f"polling {batch.id}: {exc.status_code}; trying again later")
                continue
            raise describe_api_error(exc) from None
        except anthropic.APIConnectionError:
            failed += 1
            progress.warn(f"polling {batch.id}: connection failed; trying again later")
            continue
        counts = {k: getattr(remote.request_counts, k) for k in COUNT_KEYS}
        info = {"status": remote.processing_status, "counts": counts, "round": batch.round, "shard": batch.shard}
        if snapshot.batches.get(batch.id) != info:
            changed.append(batch.id)
        snapshot.batches[batch.id] = info
        if remote.processing_status == "ended":
            ended_at = remote.ended_at.isoformat().replace("+00:00", "Z") if remote.ended_at else None
            record(run_dir, "batch_ended", batch_id=batch.id, processing_status="ended", request_counts=counts,
                   ended_at=ended_at)
            batch.ended = {"request_counts": counts, "ended_at": ended_at}
    snapshot.unreachable = snapshot.unreachable + 1 if open_batches and failed == len(open_batches) else 0
    if snapshot.unreachable >= give_up_after:
        base = shown_base_url()
        raise BatchpilotError(f"cannot reach the API at {base} to check the run's batches",
                              "check the network and ANTHROPIC_BASE_URL (with --emulate, keep using --emulate for this "
                              "run), then run the same command again: the batches keep running meanwhile")
    return changed


def _age(batch: BatchState) -> timedelta | None:
    if not batch.created_at:
        return None
    created = datetime.fromisoformat(batch.created_at.replace("Z", "+00:00"))
    return datetime.now(timezone.utc) - created


def retention_warnings(state: RunState) -> list[str]:
    """Ended batches whose results are not yet recorded and near the 29-day deletion."""
    out = []
    for b in state.unrecorded():
        age = _age(b)
        if age is not None and age > RETENTION_WARN:
            out.append(f"batch {b.id} was created {age.days} days ago: its results are deleted 29 days after "
                       "creation; run `batchpilot fetch` now")
    return out


def describe_change(batch_id: str, info: dict, shards_in_round: int) -> str:
    c = info["counts"]
    parts = " · ".join(f"{c.get(k, 0)} {k}" for k in COUNT_KEYS if c.get(k, 0))
    return f"round {info['round']} shard {info['shard']}/{shards_in_round} {batch_id}: {info['status']} — {parts or 'no requests'}"


def describe_totals(snapshot: Snapshot, started: float, pending: int, round_: int) -> str:
    t = snapshot.totals(round_)
    elapsed = time.monotonic() - started
    done = sum(t[k] for k in COUNT_KEYS if k != "processing")
    total = done + t["processing"]
    eta = ""
    if 0 < done < total:
        eta = f", expected end in ~{_fmt(elapsed * (total - done) / done)}"
    elif done == 0 and total:
        eta = ", expected end: unknown (the API reports counts when a batch ends; most end within an hour)"
    tail = f", {pending} shard(s) waiting to be submitted" if pending else ""
    return (f"round {round_} total: {t['processing']} processing · {t['succeeded']} succeeded · {t['errored']} errored · "
            f"{t['expired']} expired · {t['canceled']} canceled — elapsed {_fmt(elapsed)}{eta}{tail}")


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
