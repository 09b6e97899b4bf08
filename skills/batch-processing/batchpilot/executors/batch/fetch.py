"""Fetching an ended batch's results into results.jsonl: each result exactly once, none lost, fast.

Per batch, two journaled steps:

1. *Download*: GET the results through the SDK's raw streaming response (no per-line objects) into
   `batches/<id>.jsonl.part`, fsync, check it has one line per request and ends with a newline, rename it to
   `batches/<id>.jsonl`, journal `results_downloaded`. A download cut mid-stream is started again from
   scratch (the API has no Range support), up to `DOWNLOAD_ATTEMPTS` times; the next run retries it too.
2. *Record*: journal `results_recording` with results.jsonl's size, append every line with
   `"attempt"` (the round), `"mode": "batch"`, `"at"` and `"batch_id"` added, fsync, journal
   `results_recorded`, delete the downloaded file. A run killed in between truncates results.jsonl back to
   the journaled size and records the batch again, so no line is ever doubled.

Lines are handled as bytes: the fields are spliced in before the closing brace of each compact line, and the
custom_id and result type are read with a prefix match (full JSON parsing only for lines in another shape).
The set of custom_ids is checked against the shard's requests: missing ids are counted (retry resubmits
them), unexpected or repeated ones are dropped with a warning.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from batchpilot.core import crash
from batchpilot.api.client import describe_api_error
from batchpilot.api.failures import describe
from batchpilot.core.errors import BatchpilotError
from batchpilot.executors.batch.state import BatchState, RunState, record
from batchpilot.core.progress import Progress
from batchpilot.core.clock import now_iso
from batchpilot.executors.batch.shards import shard_id_set

DOWNLOAD_ATTEMPTS = 3
FETCH_CHUNK = 1 << 16  # bigger reads than httpx's default: fewer Python-level iterations per MB
SAMPLE_IDS = 20
_RESULT_HEAD = re.compile(rb'^\{"custom_id":"([A-Za-z0-9_-]{1,64})","result":\{"type":"([a-z_]+)"')


def fetch_ready(client: Any, run_dir: Path, state: RunState, progress: Progress) -> list[dict]:
    """Download and record every ended, unrecorded batch. Returns one summary per batch recorded."""
    done = []
    for batch in sorted(state.unrecorded(), key=lambda b: (b.round, b.shard)):
        done.append(fetch_batch(client, run_dir, state, batch, progress))
    return done


def fetch_batch(client: Any, run_dir: Path, state: RunState, batch: BatchState, progress: Progress) -> dict:
    run_dir = Path(run_dir)
    results = run_dir / "results.jsonl"
    if batch.recording is not None:
        _truncate(results, batch.recording)  # a recording was cut short: undo its partial append
        batch.recording = None
    folder = run_dir / "batches"
    folder.mkdir(exist_ok=True)
    raw = folder / f"{batch.id}.jsonl"
    if batch.downloaded is None or not raw.exists():
        archived = _download(client, run_dir, batch, raw, progress)
        if archived:
            return _record_archived(run_dir, batch, progress)
    return _record(run_dir, state, batch, raw, results, progress)


def _download(client: Any, run_dir: Path, batch: BatchState, raw: Path, progress: Progress) -> bool:
    """Stream the results to raw.part and rename; True if the batch is archived (results gone)."""
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    part = raw.with_name(raw.name + ".part")
    last_error: Exception | None = None
    transport = _transport_errors(client)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            lines, size = _stream_to(client, batch.id, part)
        except anthropic.NotFoundError as exc:
            # Archived results answer the API's own not_found_error body. A 404 in any other shape (an HTML
            # page: ANTHROPIC_BASE_URL points at something else) must not turn every item into `missing`.
            body = exc.body if isinstance(exc.body, dict) else {}
            inner = body.get("error") if isinstance(body.get("error"), dict) else body
            if inner.get("type") == "not_found_error":
                return True
            raise describe_api_error(exc) from None
        except (anthropic.APIConnectionError, anthropic.APIStatusError, _Incomplete, *transport) as exc:
            if isinstance(exc, anthropic.APIStatusError) and exc.status_code < 500 and exc.status_code != 429:
                raise describe_api_error(exc) from None
            last_error = exc
            progress.warn(f"results of {batch.id}: download {attempt} broke ({describe(exc)}); starting it again")
            continue
        if lines != batch.requests:
            last_error = _Incomplete(f"{lines} lines for {batch.requests} requests")
            progress.warn(f"results of {batch.id}: {last_error}; downloading again")
            continue
        os.replace(part, raw)
        crash.point("after-download-before-journal")
        record(run_dir, "results_downloaded", batch_id=batch.id, path=str(raw.relative_to(run_dir)), lines=lines, bytes=size)
        return False
    part.unlink(missing_ok=True)
    raise BatchpilotError(f"results of batch {batch.id}: {DOWNLOAD_ATTEMPTS} downloads failed ({describe(last_error)})",
                          "re-run `batchpilot fetch RUN`; finished downloads are kept")


class _Incomplete(Exception):
    pass


def _transport_errors(client: Any) -> tuple[type[BaseException], ...]:
    """The HTTP library's own errors: a body cut mid-stream surfaces from it, not from the SDK."""
    names = [cls.__module__.split(".")[0] for cls in type(client._client).__mro__]
    module = next((sys.modules[n] for n in names if n.startswith("httpx") and n in sys.modules), None)
    error = getattr(module, "HTTPError", None)
    return (error, OSError) if isinstance(error, type) else (OSError,)


def _stream_to(client: Any, batch_id: str, part: Path) -> tuple[int, int]:
    lines = size = 0
    last = b""
    with open(part, "wb") as fh:
        with client.messages.batches.with_streaming_response.results(batch_id) as response:
            for chunk in response.iter_bytes(FETCH_CHUNK):
                if not chunk:
                    continue
                fh.write(chunk)
                lines += chunk.count(b"\n")
                size += len(chunk)
                last = chunk[-1:]
                if crash.CRASH_ENV in os.environ:
                    fh.flush()
                    crash.point("mid-download")
        fh.flush()
        os.fsync(fh.fileno())
    if size and last != b"\n":
        lines += 1  # the API may omit the final newline
        with open(part, "ab") as fh:
            fh.write(b"\n")
    return lines, size


def _record(run_dir: Path, state: RunState, batch: BatchState, raw: Path, results: Path, progress: Progress) -> dict:
    round_ = state.rounds[batch.round]
    shard = round_.shards[batch.shard - 1]
    expected = shard_id_set(run_dir / round_.source, shard)  # bytes: no decode per line
    seen: set[bytes] = set()
    counts: Counter = Counter()
    errors: Counter = Counter()
    messages: dict[str, str] = {}
    unexpected: list[bytes] = []
    duplicates: list[bytes] = []
    stamp = {"attempt": batch.round, "mode": "batch", "at": now_iso(), "batch_id": batch.id}
    comma_tail = b"," + json.dumps(stamp, separators=(",", ":"))[1:].encode() + b"\n"  # fields, closing brace
    offset = results.stat().st_size if results.exists() else 0
    record(run_dir, "results_recording", batch_id=batch.id, offset=offset)
    written = 0
    buffer: list[bytes] = []
    match = _RESULT_HEAD.match
    with open(raw, "rb") as src, open(results, "ab") as out:
        for line in src:
            head = match(line)
            if head and line.endswith(b"}\n"):
                custom_id, kind = head.group(1, 2)
                spliced = line[:-2] + comma_tail
                if kind == b"errored":
                    _note_error(json.loads(line), errors, messages)
            else:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                custom_id = str(rec["custom_id"]).encode()
                kind = str((rec.get("result") or {}).get("type", "unknown")).encode()
                rec.update(stamp)
                spliced = json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                if kind == b"errored":
                    _note_error(rec, errors, messages)
            if custom_id not in expected:
                unexpected.append(custom_id)
                continue
            if custom_id in seen:
                duplicates.append(custom_id)
                continue
            seen.add(custom_id)
            counts[kind] += 1
            buffer.append(spliced)
            written += 1
            if len(buffer) >= 2048 or written == 2:
                out.write(b"".join(buffer))
                buffer.clear()
                if written == 2 and crash.CRASH_ENV in os.environ:
                    out.flush()
                    crash.point("mid-record")
        out.write(b"".join(buffer))
        out.flush()
        os.fsync(out.fileno())
    missing = sorted(i.decode() for i in expected - seen)
    unexpected = [i.decode() for i in unexpected]
    duplicates = [i.decode() for i in duplicates]
    counts = Counter({k.decode(): n for k, n in counts.items()})
    for what, ids in (("unexpected", unexpected), ("repeated", duplicates)):
        if ids:
            progress.warn(f"results of {batch.id}: {len(ids)} {what} custom_id(s) dropped, e.g. {ids[0]}")
    if missing:
        progress.warn(f"results of {batch.id}: {len(missing)} request(s) without a result (retry resubmits them), "
                      f"e.g. {missing[0]}")
    summary = {"batch_id": batch.id, "round": batch.round, "lines": written, "counts": dict(counts),
               "errors": dict(errors), "messages": messages, "missing": len(missing),
               "missing_ids": missing[:SAMPLE_IDS], "unexpected": len(unexpected), "duplicates": len(duplicates)}
    record(run_dir, "results_recorded", **summary)
    batch.recorded = summary
    raw.unlink(missing_ok=True)
    progress.stage(f"results of {batch.id}: {written} recorded ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})")
    return summary


def _record_archived(run_dir: Path, batch: BatchState, progress: Progress) -> dict:
    progress.warn(f"results of {batch.id} are no longer available (archived 29 days after creation); "
                  "its items count as missing and `batchpilot retry` resubmits them")
    offset = (Path(run_dir) / "results.jsonl").stat().st_size if (Path(run_dir) / "results.jsonl").exists() else 0
    record(run_dir, "results_recording", batch_id=batch.id, offset=offset)
    summary = {"batch_id": batch.id, "round": batch.round, "lines": 0, "counts": {}, "errors": {}, "messages": {},
               "missing": batch.requests, "missing_ids": [], "unexpected": 0, "duplicates": 0, "archived": True}
    record(run_dir, "results_recorded", **summary)
    batch.recorded = summary
    return summary


def _note_error(rec: dict, errors: Counter, messages: dict[str, str]) -> None:
    envelope = (rec.get("result") or {}).get("error") or {}
    inner = envelope.get("error") if isinstance(envelope.get("error"), dict) else envelope
    etype = str(inner.get("type") or "unknown")
    errors[etype] += 1
    messages.setdefault(etype, str(inner.get("message") or ""))


def _truncate(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size > size:
        with open(path, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())


