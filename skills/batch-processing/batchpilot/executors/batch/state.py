"""The batch executor's ledger: its journal events, the state they add up to.

Every remote side effect is bracketed by fsynced journal events, so a process killed at any instant leaves a
journal from which the next one knows exactly what happened and what is unknown:

| event | fields | written |
|---|---|---|
| `round_planned` | round, source, requests, shards [{shard, start, end, requests, bytes, sha256}], ok_before, selected | before any create of the round |
| `submit_intent` | round, shard, attempt, requests, first_custom_id, last_custom_id, bytes, sha256, at | before each create POST |
| `batch_created` | round, shard, batch_id, requests, created_at, expires_at, reconciled | after the create answered (or a reconcile found it) |
| `batch_disowned` | round, shard, batch_id, reason | a reconciled batch's results carried other custom_ids: not ours, the shard is created again |
| `create_rejected` | round, shard, status, message | after a 400/413: nothing was created, the shard is bad |
| `create_refused` | round, shard, status | after a 429/401/402/403: nothing was created, try again later |
| `batch_ended` | batch_id, processing_status, request_counts, ended_at | the first poll that saw it ended |
| `results_downloaded` | batch_id, path, lines, bytes | after the `.part` file was renamed |
| `results_recording` | batch_id, offset | before appending to results.jsonl (its size then) |
| `results_recorded` | batch_id, round, lines, counts, missing, unexpected, duplicates | after the append was fsynced |
| `cancel_requested` | batch_id | after a cancel call answered |
| `job_canceled` | batches | `cancel` ran: no more shards or rounds are submitted automatically |
| `job_stopped` | reason, error_type, message | an account-level failure (billing, credit, auth) |
| `job_resumed` | — | an explicit `retry` lifts a cancel or a stop |

An intent without its `batch_created` is *unknown*: the create may or may not have reached the server, so
it is reconciled against the account's batch list before anything is created again (`submit.py`).
A `results_recording` without its `results_recorded` means results.jsonl may hold part of that batch: it is
truncated back to `offset` and the batch recorded again (`fetch.py`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.api.failures import account_refusal
from batchpilot.core import crash
from batchpilot.rundir.journal import iter_journal, journal
from batchpilot.executors.batch.shards import Shard


def record(run_dir: Path, event: str, **fields: Any) -> None:
    """Journal one event (fsynced), then give the crash hook its chance."""
    journal(run_dir, event, **fields)
    crash.journaled()


@dataclass
class ShardState(Shard):
    """A planned shard (`shards.Shard`) and what the journal says happened to it."""

    round: int = 0
    intents: list[dict] = field(default_factory=list)
    batch_id: str | None = None
    rejected: dict | None = None
    refused: int = 0  # intents answered by a refusal (429 and the like): nothing was created for them

    @property
    def unknown(self) -> bool:
        """A create was (maybe) sent and its outcome is not journaled."""
        return self.batch_id is None and self.rejected is None and len(self.intents) > self.refused


@dataclass
class BatchState:
    id: str
    round: int
    shard: int
    requests: int
    created_at: str | None = None
    expires_at: str | None = None
    ended: dict | None = None
    downloaded: dict | None = None
    recording: int | None = None  # results.jsonl offset of an unfinished recording
    recorded: dict | None = None
    cancel_requested: bool = False
    reconciled: bool = False  # adopted by a reconcile: its results must carry exactly the shard's custom_ids


@dataclass
class RoundState:
    round: int
    source: str
    requests: int
    shards: list[ShardState]
    ok_before: int = 0
    selected: dict = field(default_factory=dict)


@dataclass
class RunState:
    """What the journal says about the batch side of a run."""

    rounds: dict[int, RoundState] = field(default_factory=dict)
    batches: dict[str, BatchState] = field(default_factory=dict)
    canceled: bool = False
    stopped: dict | None = None
    disowned: set[str] = field(default_factory=set)  # adopted by a reconcile, then found to be another job's

    @property
    def current(self) -> RoundState | None:
        return self.rounds[max(self.rounds)] if self.rounds else None

    def shard(self, round_: int, shard: int) -> ShardState:
        return self.rounds[round_].shards[shard - 1]

    def pending(self) -> list[ShardState]:
        """Shards of any round not yet turned into a batch (unknown ones first need reconciling)."""
        return [s for r in self.rounds.values() for s in r.shards if s.batch_id is None and s.rejected is None]

    def open_batches(self) -> list[BatchState]:
        return [b for b in self.batches.values() if b.ended is None]

    def unrecorded(self) -> list[BatchState]:
        return [b for b in self.batches.values() if b.ended is not None and b.recorded is None]

    def round_done(self, round_: int) -> bool:
        """Every shard of the round has a batch, and every batch is recorded."""
        shards = self.rounds[round_].shards
        return all(s.rejected is not None or (s.batch_id and self.batches[s.batch_id].recorded) for s in shards)

    def claimed_ids(self) -> set[str]:
        """Batches a reconcile must never adopt: this run's, and the ones it found to be another job's."""
        return set(self.batches) | self.disowned


def load_state(run_dir: Path) -> RunState:
    """Replay the journal into a RunState."""
    state = RunState()
    for ev in iter_journal(run_dir):
        kind = ev.get("event")
        if kind == "round_planned":
            shards = [ShardState(round=ev["round"], **s) for s in ev["shards"]]
            state.rounds[ev["round"]] = RoundState(ev["round"], ev["source"], ev["requests"], shards,
                                                   ev.get("ok_before", 0), ev.get("selected") or {})
        elif kind == "submit_intent":
            state.shard(ev["round"], ev["shard"]).intents.append(ev)
        elif kind == "batch_created":
            shard = state.shard(ev["round"], ev["shard"])
            shard.batch_id = ev["batch_id"]
            state.batches[ev["batch_id"]] = BatchState(ev["batch_id"], ev["round"], ev["shard"], ev["requests"],
                                                       ev.get("created_at"), ev.get("expires_at"),
                                                       reconciled=bool(ev.get("reconciled")))
        elif kind == "batch_disowned":
            shard = state.shard(ev["round"], ev["shard"])
            state.batches.pop(ev["batch_id"], None)
            state.disowned.add(ev["batch_id"])
            shard.batch_id = None
            shard.refused = len(shard.intents)  # the adopted batch was not this create's: nothing of ours exists
        elif kind == "create_rejected":
            state.shard(ev["round"], ev["shard"]).rejected = ev
        elif kind == "create_refused":
            shard = state.shard(ev["round"], ev["shard"])
            shard.refused = len(shard.intents)
        elif kind in ("batch_ended", "results_downloaded", "results_recording", "results_recorded", "cancel_requested"):
            batch = state.batches.get(ev["batch_id"])
            if batch is None:
                continue
            if kind == "batch_ended":
                batch.ended = ev
            elif kind == "results_downloaded":
                batch.downloaded = ev
            elif kind == "results_recording":
                batch.recording = ev["offset"]
            elif kind == "results_recorded":
                batch.recorded, batch.recording = ev, None
            else:
                batch.cancel_requested = True
        elif kind == "job_canceled":
            state.canceled = True
        elif kind == "job_stopped":
            state.stopped = ev
        elif kind == "job_resumed":
            state.canceled, state.stopped = False, None
    return state


def round_refusal(state: RunState, round_: int) -> tuple[str, str] | None:
    """(error type, API message) when a round's recorded lines show the account refused, else None."""
    errors: Counter = Counter()
    messages: dict[str, str] = {}
    lines = 0
    for batch in state.batches.values():
        if batch.round != round_ or not batch.recorded:
            continue
        lines += batch.recorded.get("lines", 0)
        errors.update(batch.recorded.get("errors") or {})
        for etype, msg in (batch.recorded.get("messages") or {}).items():
            messages.setdefault(etype, msg)
    return account_refusal(errors, messages, lines)
