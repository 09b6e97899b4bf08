"""The Message Batches store: create, lifecycle on the emulated clock, request counts, and results lines.

Memory stays flat whatever the batch size: at create the body is read request by request and each request
is spooled to disk as one compact JSON line; the store keeps only counters and timestamps per batch. Counts
are computed by scanning the spool once, incrementally; results lines are generated from the spool on every
download, so they are never held in memory either.

Timeline of a batch of n requests (times on the emulated clock):

* request i finishes at created + (i+1)/batch_speed; the batch ends when the last one does, or at
  expires_at (created + batch_window), when the unfinished requests become `expired`;
* cancel at t: status `canceling`, requests unfinished at t become `canceled`, and the batch ends at
  t + cancel_delay;
* at created + archive_after the batch is archived: still listed, results no longer downloadable.

A finished request's outcome is a pure function of the request: `errored` when its params fail validation
(`validate.check_params`) or an errored-kind fault picks it, `expired` when an `expired` fault picks it,
else `succeeded` with the responder's answer. Results do not come in input order: the API says results
"may be in any order" (https://platform.claude.com/docs/en/build-with-claude/batch-processing), so each
window of SHUFFLE_WINDOW lines is shuffled with a seed (per seed and batch: every download agrees; memory
stays flat). Prompt caching applies within a batch (service_tier "batch"), each request seen at its own
finishing time, and a would-be hit misses with probability 1 - `batch_cache_hit_rate` (best-effort).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from batchpilot.emulator.state.cache import PromptCache
from batchpilot.emulator.state.clock import iso
from batchpilot.emulator.config import EmulatorConfig
from batchpilot.emulator.behaviour.faults import ANSWER_FAULTS, LINE_ERRORS, FaultPlan
from batchpilot.emulator.behaviour.message_build import build_message
from batchpilot.emulator.behaviour.responder import answer, make_id, request_key
from batchpilot.emulator.behaviour.media import check_media, media_tokens
from batchpilot.emulator.behaviour.request_checks import check_params

CHUNK_BYTES = 64 * 1024
SHUFFLE_WINDOW = 512
COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")


class DropConnection(Exception):
    """Raised inside a results stream to make the server cut the connection (the drop_results fault)."""


@dataclass
class Batch:
    id: str
    size: int
    created: float
    expires: float
    spool: Path
    created_mono: float
    cancel_at: float | None = None
    ended_at: float | None = None
    archived_at: float | None = None
    finished: int | None = None  # requests that reached the model, fixed when the batch ends
    rest: str = "expired"  # what the unfinished become: canceled or expired
    scanned: int = 0  # spool lines classified so far, and the byte offset after them
    offset: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"succeeded": 0, "errored": 0, "expired": 0})
    downloads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "canceling" if self.cancel_at is not None else "in_progress"


class BatchStore:
    """All batches of one emulator, newest last; every method reads the clock through `now`."""

    def __init__(self, config: EmulatorConfig, faults: FaultPlan, now, spool_dir: Path):
        self.config = config
        self.faults = faults
        self.now = now
        self.dir = spool_dir
        self.files = lambda file_id: None  # file_id -> bytes; the app points it at its Files API store
        self.batches: dict[str, Batch] = {}
        self.serial = 0
        self.line_faults: dict[str, int] = {}
        self._lock = threading.Lock()

    # ---- create ------------------------------------------------------------------------------------
    def new_spool(self) -> tuple[str, Path]:
        with self._lock:
            self.serial += 1
            batch_id = make_id("msgbatch", f"{self.config.seed}/batch/{self.serial}")
        return batch_id, self.dir / f"{batch_id}.jsonl"

    def add(self, batch_id: str, spool: Path, size: int) -> Batch:
        created = self.now()
        batch = Batch(batch_id, size, created, created + self.config.batch_window, spool, time.monotonic())
        with self._lock:
            self.batches[batch_id] = batch
        return batch

    def queued(self) -> int:
        """Batch requests not yet processed, across batches: what the processing-queue limit counts."""
        now = self.now()
        total = 0
        for batch in list(self.batches.values()):
            if batch.ended_at is None and batch.cancel_at is None:
                total += batch.size - self._done_at(batch, min(now, batch.expires))
        return total

    # ---- lifecycle ---------------------------------------------------------------------------------
    def _done_at(self, batch: Batch, t: float) -> int:
        return max(0, min(batch.size, int((t - batch.created) * self.config.batch_speed + 1e-9)))

    def get(self, batch_id: str) -> Batch | None:
        batch = self.batches.get(batch_id)
        if batch is not None:
            self.refresh(batch)
        return batch

    def refresh(self, batch: Batch) -> None:
        now = self.now()
        with batch.lock:
            if batch.ended_at is None:
                if batch.cancel_at is not None:
                    if now >= batch.cancel_at + self.config.cancel_delay:
                        self._end(batch, self._done_at(batch, batch.cancel_at), "canceled",
                                  batch.cancel_at + self.config.cancel_delay)
                else:
                    natural = batch.created + batch.size / self.config.batch_speed
                    if natural <= batch.expires and now >= natural:
                        self._end(batch, batch.size, "expired", natural)
                    elif now >= batch.expires:
                        self._end(batch, self._done_at(batch, batch.expires), "expired", batch.expires)
            if batch.archived_at is None and now >= batch.created + self.config.archive_after:
                self.archive(batch)

    def _end(self, batch: Batch, finished: int, rest: str, at: float) -> None:
        self._scan(batch, finished)
        batch.finished, batch.rest, batch.ended_at = finished, rest, at

    def cancel(self, batch: Batch) -> None:
        with batch.lock:
            batch.cancel_at = self.now()

    def finish(self, batch: Batch, how: str) -> None:
        """Admin: end now, every request finished (`finish`) or the unfinished ones expired (`expire`)."""
        with batch.lock:
            if batch.ended_at is None:
                now = self.now()
                self._end(batch, batch.size if how == "finish" else self._done_at(batch, now), "expired", now)

    def archive(self, batch: Batch) -> None:
        batch.archived_at = batch.archived_at or self.now()
        if batch.ended_at is None:
            self._end(batch, self._done_at(batch, batch.archived_at), "expired", batch.archived_at)
        batch.spool.unlink(missing_ok=True)

    def delete(self, batch: Batch) -> None:
        with self._lock:
            self.batches.pop(batch.id, None)
        batch.spool.unlink(missing_ok=True)

    # ---- counts --------------------------------------------------------------------------------------
    def outcome(self, batch_id: str, custom_id: str, params: Any) -> tuple[str, tuple[str, str] | None]:
        """(succeeded | errored | expired, (error type, message) for errored) of a finished request."""
        problem = check_params(params, in_batch=True, allow_unknown_models=self.config.allow_unknown_models)
        if problem is not None:
            return "errored", (problem.type, problem.message)
        media_problem = check_media(params, self.files)
        if media_problem is not None:
            return "errored", ("invalid_request_error", media_problem)
        rule = self.faults.first((*LINE_ERRORS, "expired"), f"{batch_id}/{custom_id}", custom_id, count=False)
        if rule is None:
            return "succeeded", None
        if rule.kind == "expired":
            return "expired", None
        return "errored", LINE_ERRORS[rule.kind]

    def _scan(self, batch: Batch, upto: int) -> None:
        if batch.scanned >= upto or not batch.spool.exists():
            return
        with open(batch.spool, "rb") as handle:
            handle.seek(batch.offset)
            while batch.scanned < upto:
                line = handle.readline()
                if not line:
                    break
                custom_id, params = json.loads(line)
                kind, error = self.outcome(batch.id, custom_id, params)
                batch.counts[kind] += 1
                if error is not None or kind == "expired":
                    label = kind if error is None else error[0]
                    self.line_faults[label] = self.line_faults.get(label, 0) + 1
                batch.scanned += 1
            batch.offset = handle.tell()

    def request_counts(self, batch: Batch) -> dict[str, int]:
        counts = dict.fromkeys(COUNT_KEYS, 0)
        if batch.ended_at is not None:
            counts.update(batch.counts)
            counts[batch.rest] += batch.size - (batch.finished or 0)
        elif self.config.progressive_counts:
            with batch.lock:
                self._scan(batch, self._done_at(batch, self.now()))
            counts.update(batch.counts)
            counts["processing"] = batch.size - batch.scanned
        else:
            counts["processing"] = batch.size
        return counts

    def to_json(self, batch: Batch, base_url: str) -> dict:
        ended = batch.ended_at is not None
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": self.request_counts(batch),
            "ended_at": iso(batch.ended_at),
            "created_at": iso(batch.created),
            "expires_at": iso(batch.expires),
            "archived_at": iso(batch.archived_at),
            "cancel_initiated_at": iso(batch.cancel_at),
            "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def listing(self) -> list[Batch]:
        """Newest first: by created_at, then id, descending."""
        with self._lock:
            batches = list(self.batches.values())
        return sorted(batches, key=lambda b: (b.created, b.id), reverse=True)

    # ---- results -------------------------------------------------------------------------------------
    def results(self, batch: Batch) -> Iterator[bytes]:
        """The results JSONL in chunks of about CHUNK_BYTES; `\\n` line ends, no blank lines."""
        batch.downloads += 1
        drop = self.faults.first(("drop_results",), f"{batch.id}/download{batch.downloads}", batch.id)
        cut_at = None if drop is None or drop.match else max(1, batch.size // 2)
        return self._lines(batch, batch.finished or 0, cut_at, drop)

    def _lines(self, batch: Batch, finished: int, cut_at: int | None, drop) -> Iterator[bytes]:
        cache = PromptCache()
        spool = open(batch.spool, "rb")
        shuffle = random.Random(f"{self.config.seed}/{batch.id}").shuffle if self.config.shuffle_results else None
        window: list[str] = []
        try:
            for index, raw in enumerate(spool):
                custom_id, params = json.loads(raw)
                if drop is not None and (index == cut_at or (drop.match and drop.selects(custom_id))):
                    yield from _chunks(window, shuffle)
                    raise DropConnection()
                # Lines are computed in input order (the cache sees requests as they finish), then sent shuffled.
                window.append(self._line(batch, index, finished, custom_id, params, cache))
                if len(window) >= SHUFFLE_WINDOW:
                    yield from _chunks(window, shuffle)
                    window = []
            yield from _chunks(window, shuffle)
        finally:
            spool.close()

    def _hit(self, batch: Batch, custom_id: str) -> bool:
        digest = hashlib.blake2b(f"{self.config.seed}/{batch.id}/{custom_id}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") / 2 ** 32 < self.config.batch_cache_hit_rate

    def _line(self, batch: Batch, index: int, finished: int, custom_id: str, params: Any, cache: PromptCache) -> str:
        if index >= finished:
            result: dict = {"type": batch.rest}
        else:
            kind, error = self.outcome(batch.id, custom_id, params)
            if kind == "errored":
                result = {"type": "errored", "error": {"type": "error", "error": {"type": error[0], "message": error[1]},
                                                        "request_id": None}}
            elif kind == "expired":
                result = {"type": "expired"}
            else:
                key = request_key(params, self.config.seed)
                fault = self.faults.first(ANSWER_FAULTS, f"{batch.id}/{custom_id}", custom_id, count=False)
                reply = answer(params, key, fault.kind if fault else None)
                at = batch.created + (index + 1) / self.config.batch_speed
                usage = cache.apply(params, at)
                if usage.cache_read and not self._hit(batch, custom_id):
                    usage = usage.missed()
                usage.input_tokens += media_tokens(params, self.files)  # after the cached prefix: plain input
                msg = build_message(make_id("msg", f"{batch.id}/{custom_id}"), params["model"], reply, usage, "batch")
                result = {"type": "succeeded", "message": msg}
        return json.dumps({"custom_id": custom_id, "result": result}, separators=(",", ":"), ensure_ascii=False) + "\n"


def _chunks(lines: list[str], shuffle) -> Iterator[bytes]:
    """`lines` (shuffled in place when asked) as byte chunks of about CHUNK_BYTES."""
    if shuffle is not None:
        shuffle(lines)
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode("utf-8")
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


def spool_requests(path: Path, items: Iterator[tuple[str, Any]]) -> int:
    """Write (custom_id, params) pairs as JSON lines; the count written."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for custom_id, params in items:
            handle.write(json.dumps([custom_id, params], separators=(",", ":"), ensure_ascii=False))
            handle.write("\n")
            count += 1
    return count


def remove_spool_dir(path: Path) -> None:
    for child in path.glob("*.jsonl"):
        child.unlink(missing_ok=True)
    try:
        os.rmdir(path)
    except OSError:
        pass
