"""Outcomes: what results.jsonl already says about each item, for the executors that resume (agents, headless).

An item is done when one of its `succeeded` records holds an output that validates against the run's schema
(judged by `judge.RunView.judge`, the same judge merge uses), so a later bad answer never hides an earlier
good one and collect, headless and merge always agree. Records written by agents mode carry
`output_sha256`, the hash of the output file they came from, so the same file is never recorded twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from batchpilot.core.files import iter_jsonl
from batchpilot.results.judge import RunView


@dataclass
class ItemState:
    """One item's history: attempts so far, whether a valid output exists, why the latest one was rejected."""

    attempts: int = 0
    done: bool = False
    rejected: int = 0  # succeeded records whose output did not validate
    last_error: str | None = None  # why the latest judged record was rejected (None when it was valid)
    hashes: set[str] = field(default_factory=set)


def scan_outcomes(view: RunView) -> dict[str, ItemState]:
    """Every item's state from results.jsonl (records of any executor, in file order)."""
    states: dict[str, ItemState] = {}
    for record in iter_jsonl(view.run_dir / "results.jsonl"):
        cid, result = record.get("custom_id"), record.get("result")
        if not isinstance(cid, str) or not isinstance(result, dict):
            continue
        state = states.setdefault(cid, ItemState())
        state.attempts = max(state.attempts + 1, record.get("attempt") if type(record.get("attempt")) is int else 0)
        if isinstance(record.get("output_sha256"), str):
            state.hashes.add(record["output_sha256"])
        if result.get("type") != "succeeded":
            continue
        note(state, view.judge(result)[1])
    return states


def note(state: ItemState, error: str | None) -> None:
    """Fold one judged succeeded record into an item's state."""
    if error is None:
        state.done, state.last_error = True, None
    else:
        state.rejected += 1
        state.last_error = error


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
