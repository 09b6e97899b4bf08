"""The direct executor's jobs: which requests still need sending, in which order, and recording answers.

`read_ledger` reads `results.jsonl` once: ids that already succeeded are skipped (a rerun after a crash or
Ctrl-C sends no finished item again) and earlier attempt numbers are continued. `iter_jobs` streams the
requests file (never loaded whole) into jobs, one `PendingRequest` per item; `JobQueue` puts rate-limited
and interrupted jobs first, then retries whose backoff has passed, then new work. `sendable` turns a request line's params into the
SDK call's arguments. `ResultWriter` appends result records with group commit: a record is on disk
(fsynced) before its item counts as done.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import append_jsonl, iter_jsonl
from batchpilot.core.tokens import estimate_input_tokens

# Keys a requests.jsonl body may carry that must not go to POST /v1/messages: we need one JSON answer.
CLIENT_ONLY_KEYS = ("stream",)


@dataclass
class PendingRequest:
    """A job: one item's request still to be answered, and what has happened to it in this run."""

    custom_id: str
    params: dict
    input_tokens: int  # the estimate
    max_tokens: int
    prior_attempt: int = 0  # highest attempt number already in results.jsonl for this id
    sends: int = 0
    rate_limited: int = 0
    failures: int = 0
    responded: bool = False  # the HTTP call returned: the task is only recording now
    send_id: str = ""  # the latest send's id in sends.jsonl (a result record names it)
    recorded: bool = False  # the latest send's answer was recorded in results.jsonl

    @property
    def attempt(self) -> int:
        """The attempt number of the latest send, continuing the numbers results.jsonl already has."""
        return self.prior_attempt + self.sends


def read_ledger(results_path: Path) -> tuple[set[str], dict[str, int]]:
    """(ids that already succeeded, highest attempt recorded per id) from results.jsonl."""
    done: set[str] = set()
    attempts: dict[str, int] = {}
    for record in iter_jsonl(results_path):
        cid = record.get("custom_id")
        result = record.get("result")
        if not isinstance(cid, str) or not isinstance(result, dict):
            continue
        if result.get("type") == "succeeded":
            done.add(cid)
        attempt = record.get("attempt")
        if type(attempt) is int and attempt > attempts.get(cid, 0):
            attempts[cid] = attempt
    return done, attempts


def iter_jobs(requests_path: Path, done: set[str], prior: dict[str, int]) -> Iterator[PendingRequest]:
    """The requests file's lines as Jobs, in file order, minus the ids in `done`."""
    for number, line in enumerate(iter_jsonl(requests_path, require=("custom_id",)), 1):
        cid, params = line.get("custom_id"), line.get("params")
        if not isinstance(cid, str) or not isinstance(params, dict):
            raise BatchpilotError(f"{requests_path.name} line {number}: expected {{\"custom_id\", \"params\"}}",
                                  "the run directory was edited or damaged; prepare the run again")
        if cid in done:
            continue
        yield PendingRequest(cid, params, estimate_input_tokens(params), int(params.get("max_tokens") or 0), prior.get(cid, 0))


def sendable(params: dict) -> tuple[dict, dict]:
    """(the SDK's required keyword arguments, everything else as `extra_body`), minus client-only keys.

    Passing the rest as `extra_body` sends it verbatim, so a field this SDK version has no argument for
    (or a newer API field) still reaches the API instead of failing with a TypeError.
    """
    body = {k: v for k, v in params.items() if k not in CLIENT_ONLY_KEYS and not k.startswith("_")}
    required = {k: body.pop(k) for k in ("model", "max_tokens", "messages") if k in body}
    return required, body


class JobQueue:
    """What to send next: jobs put back at the front (429s, interrupted admissions), then retries whose
    backoff has passed (retries go ahead of new work), then the next new job from `source`."""

    def __init__(self, source: Iterator[PendingRequest]):
        self.source = source
        self.front: deque[PendingRequest] = deque()
        self.retries: list[tuple[float, int, PendingRequest]] = []  # (ready_at, seq, job): a heap
        self.seq = itertools.count()
        self.exhausted = False  # source has no more jobs

    def next(self, now: float) -> PendingRequest | None:
        """The job to send now, or None when nothing is ready."""
        if self.front:
            return self.front.popleft()
        if self.retries and self.retries[0][0] <= now:
            return heapq.heappop(self.retries)[2]
        if not self.exhausted:
            job = next(self.source, None)
            if job is not None:
                return job
            self.exhausted = True
        return None

    def retry_at(self, job: PendingRequest, ready: float) -> None:
        heapq.heappush(self.retries, (ready, next(self.seq), job))

    def wait(self, now: float) -> float | None:
        """Seconds until a queued retry is ready; None when nothing queued becomes ready by itself."""
        return self.retries[0][0] - now if self.retries and not self.front else None

    def empty(self) -> bool:
        return self.exhausted and not self.front and not self.retries


class ResultWriter:
    """Appends result records with group commit: concurrent writers share one fsync; `write` returns only
    once the caller's record is on disk."""

    def __init__(self, path: Path):
        self.path = path
        self.pending: list[dict] = []
        self.lock = asyncio.Lock()

    async def write(self, record: dict) -> None:
        self.pending.append(record)
        async with self.lock:
            if not self.pending:
                return  # an earlier holder wrote ours with its batch
            batch, self.pending = self.pending, []
            await asyncio.to_thread(append_jsonl, self.path, batch)
