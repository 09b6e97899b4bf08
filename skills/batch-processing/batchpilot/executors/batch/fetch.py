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
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from batchpilot.core.files import safe_dir
from batchpilot.core import crash
from batchpilot.api.client import describe_api_error
from batchpilot.api.failures import describe
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.shell import next_command
from batchpilot.executors.batch.state import BatchState, RunState, record
from batchpilot.core.progress import Progress
from batchpilot.core.clock import now_iso
from batchpilot.executors.batch.poll import Backoff
from batchpilot.executors.batch.shards import shard_id_set

DOWNLOAD_ATTEMPTS = 3
RESULTS_404_WINDOW = timedelta(minutes=10)  # server time after `ended_at` a results 404 is taken for a glitch
ARCHIVE_AGE = timedelta(days=29)
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
    folder = safe_dir(run_dir, "batches")
    raw = folder / f"{batch.id}.jsonl"
    if batch.downloaded is None or not raw.exists():
        archived = _download(client, run_dir, batch, raw, progress)
        if archived:
            return _record_archived(run_dir, batch, progress)
    if batch.reconciled and not _carries_shard_ids(run_dir, state, batch, raw):
        return _disown(run_dir, state, batch, raw, progress)
    return _record(run_dir, state, batch, raw, results, progress)


def _carries_shard_ids(run_dir: Path, state: RunState, batch: BatchState, raw: Path) -> bool:
    """Whether a downloaded batch's results name only its shard's custom_ids (a reconciled batch must)."""
    round_ = state.rounds[batch.round]
    expected = shard_id_set(Path(run_dir) / round_.source, round_.shards[batch.shard - 1])
    with open(raw, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            head = _RESULT_HEAD.match(line)
            custom_id = head.group(1) if head else str(json.loads(line).get("custom_id")).encode()
            if custom_id not in expected:
                return False
    return True


def _disown(run_dir: Path, state: RunState, batch: BatchState, raw: Path, progress: Progress) -> dict:
    """A reconcile adopted another job's batch of the same size: forget it, record none of its results, and
    let the shard be created again (the create it stood for never made a batch)."""
    progress.warn(f"batch {batch.id}, adopted after a create's answer was lost, holds another job's requests; "
                  f"ignoring it and creating round {batch.round} shard {batch.shard} again")
    record(run_dir, "batch_disowned", round=batch.round, shard=batch.shard, batch_id=batch.id,
           reason="its results carry other custom_ids")
    raw.unlink(missing_ok=True)
    state.batches.pop(batch.id, None)
    state.disowned.add(batch.id)
    shard = state.rounds[batch.round].shards[batch.shard - 1]
    shard.batch_id, shard.refused = None, len(shard.intents)
    return {"batch_id": batch.id, "round": batch.round, "lines": 0, "counts": {}, "errors": {}, "messages": {},
            "missing": 0, "missing_ids": [], "unexpected": 0, "duplicates": 0, "disowned": True}


def _download(client: Any, run_dir: Path, batch: BatchState, raw: Path, progress: Progress) -> bool:
    """Stream the results to raw.part and rename; True if the batch is archived (results gone)."""
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    part = raw.with_name(raw.name + ".part")
    last_error: Exception | None = None
    transport = _transport_errors(client)
    attempt = 0
    pause = Backoff(False)
    while attempt < DOWNLOAD_ATTEMPTS:
        attempt += 1
        try:
            lines, size = _stream_to(client, batch.id, part)
        except anthropic.NotFoundError as exc:
            # A 404 in any other shape than the API's not_found_error (an HTML page: ANTHROPIC_BASE_URL points
            # at something else) must not turn every item into `missing`.
            body = exc.body if isinstance(exc.body, dict) else {}
            inner = body.get("error") if isinstance(body.get("error"), dict) else body
            if inner.get("type") != "not_found_error":
                raise describe_api_error(exc) from None
            if _archived(client, batch, exc, progress):
                return True
            attempt -= 1  # a propagation glitch is not a broken download: wait, and ask again
            pause.sleep()
            continue
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
                          f"re-run `{next_command('fetch', Path(run_dir))}`; finished downloads are kept")


def _archived(client: Any, batch: BatchState, exc: Any, progress: Progress) -> bool:
    """Whether a results 404 means the batch is archived: only when the API says so (`archived_at`) or the
    batch is past the 29-day mark. A 404 within RESULTS_404_WINDOW of `ended_at` is the propagation glitch
    the real API shows (anthropic-sdk-python issue 1432): False, and the caller asks again. Past the window
    without either sign it raises, so no paid result is ever recorded missing because of a 404.

    Times are the server's (its `Date` header against the batch's own timestamps), so the window follows the
    emulator's clock and no clock skew of ours shortens it. Archiving: the results are available for 29 days
    after creation, https://docs.claude.com/en/docs/build-with-claude/batch-processing ;
    `archived_at`: https://docs.claude.com/en/api/retrieving-message-batches
    """
    server_now = _server_time(getattr(exc, "response", None))
    archived_at, created_at, ended_at = None, _parse(batch.created_at), _parse((batch.ended or {}).get("ended_at"))
    try:
        info = client.messages.batches.retrieve(batch.id)
        archived_at = getattr(info, "archived_at", None)
        created_at = getattr(info, "created_at", None) or created_at
        ended_at = getattr(info, "ended_at", None) or ended_at
    except Exception:  # the retrieve may glitch too; the journal's timestamps stand in
        pass
    if archived_at is not None or (created_at is not None and server_now - created_at >= ARCHIVE_AGE):
        return True
    since_end = server_now - (ended_at or server_now)
    if since_end > RESULTS_404_WINDOW:
        raise BatchpilotError(
            f"results of batch {batch.id} still answer 404 {since_end.total_seconds() / 60:.0f} min after it ended, "
            "though the API does not say it is archived",
            "re-run `batchpilot fetch RUN` later; no result is marked missing until the API says the batch is archived")
    if not batch.downloaded:
        progress.warn(f"results of {batch.id}: 404 {since_end.total_seconds():.0f} s after the batch ended "
                      "(a known API delay); asking again")
    return False


def _server_time(response: Any) -> datetime:
    """The server's clock from a response's `Date` header (our own clock when it has none)."""
    header = response.headers.get("date") if response is not None else None
    try:
        return parsedate_to_datetime(header) if header else datetime.now(timezone.utc)
    except (TypeError, ValueError):
        return datetime.now(timezone.utc)


def _parse(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


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


