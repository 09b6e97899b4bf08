"""Files API uploads of a `--upload files` run: each distinct file uploaded once, never twice, never lost.

Prepare writes the requests with a placeholder file id per attachment (`prepare.build.PENDING_UPLOAD` +
the file's sha256). Before round 1 is planned, `ensure_uploads`:

1. journals `upload_intent` (sha256, name, bytes) — fsynced before the POST;
2. uploads the file under a name that starts with its hash and the run's tag (`upload_name`);
3. journals `upload_done` (sha256, file_id) after the answer.

An intent without its `upload_done` (a kill, a lost answer) is *reconciled* before anything is uploaded
again: the account's files are listed and one with the same name and size is adopted (`reconciled: true`).
Once every file has an id, requests.jsonl is rewritten (atomically) with the ids in place of the
placeholders and `uploads_resolved` journaled; rounds are planned from it afterwards, so a batch carries
only file ids. `finish_uploads` (called by `run`, `retry` and `fetch`) deletes the uploads (`upload_deleted`
after each) when the job has ended with nothing left to retry, unless the run was prepared with `--keep-uploads`; a job that may still be
retried keeps them for its retries. An explicit `retry` after that (`--only errored`) calls `restore_uploads`
before it writes its round: each deleted file a selected item needs is uploaded again, once, with the same
intent / done journaling and reconciliation (`replaces` names the deleted id), and requests.jsonl is
rewritten with the new ids; the run that ends the job deletes them again. The Files API and its beta header:
https://platform.claude.com/docs/en/build-with-claude/files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.api.headers import FILES_BETA
from batchpilot.core import crash
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import atomic_stream, iter_jsonl
from batchpilot.core.progress import Progress
from batchpilot.executors.batch.state import record
from batchpilot.prepare.build import PENDING_UPLOAD
from batchpilot.rundir.journal import iter_journal
from batchpilot.rundir.manifest import open_run

LIST_LIMIT = 1000


def uses_uploads(run_dir: Path) -> bool:
    return open_run(run_dir).get("upload") == "files"


def beta_headers(run_dir: Path) -> dict[str, str]:
    """The header a batch create needs when its requests name uploaded files."""
    return {"anthropic-beta": FILES_BETA} if uses_uploads(run_dir) else {}


def wanted(run_dir: Path) -> dict[str, dict]:
    """sha256 -> {path, media_type, bytes} of the run's distinct attachments (items.jsonl order)."""
    out: dict[str, dict] = {}
    for item in iter_jsonl(Path(run_dir) / "items.jsonl", tolerate_torn_tail=False):
        media = item.get("media")
        if media and media["sha256"] not in out:
            out[media["sha256"]] = media
    return out


def upload_name(media: dict, run_dir: Path) -> str:
    """`<sha256[:16]>-<run tag>-<file name>`. The run tag (from the manifest's created_at) keeps another run's
    upload of the same file from being adopted by this run's reconciliation, and then deleted under it."""
    tag = hashlib.sha256(str(open_run(run_dir).get("created_at")).encode()).hexdigest()[:8]
    return f"{media['sha256'][:16]}-{tag}-{os.path.basename(media['path'])}"


@dataclass
class UploadJournal:
    """What the journal says of a run's uploads, read in one pass."""

    done: dict[str, str] = field(default_factory=dict)  # sha -> its latest upload_done file id
    intents: set[str] = field(default_factory=set)  # shas with any upload_intent
    pending: set[str] = field(default_factory=set)  # shas whose last intent has no done yet
    deleted: set[str] = field(default_factory=set)  # file ids deleted
    history: dict[str, str] = field(default_factory=dict)  # every file id done -> its sha
    resolved: bool = False  # requests.jsonl carries the real ids
    planned: bool = False  # round 1 is planned (the batch executor took over)


def _journal_state(run_dir: Path) -> UploadJournal:
    state = UploadJournal()
    for event in iter_journal(run_dir):
        kind = event.get("event")
        if kind == "upload_intent":
            state.intents.add(event["sha256"])
            state.pending.add(event["sha256"])
        elif kind == "upload_done":
            state.done[event["sha256"]] = event["file_id"]
            state.history[event["file_id"]] = event["sha256"]
            state.pending.discard(event["sha256"])
        elif kind == "upload_deleted":
            state.deleted.add(event["file_id"])
        elif kind == "uploads_resolved":
            state.resolved = True
        elif kind == "round_planned":
            state.planned = True
    return state


def ensure_uploads(client: Any, run_dir: Path, progress: Progress) -> dict | None:
    """Upload what is missing and resolve requests.jsonl; the receipt's `uploads` part (None: not a files run)."""
    run_dir = Path(run_dir)
    if not uses_uploads(run_dir):
        return None
    journal_state = _journal_state(run_dir)
    done, intents = journal_state.done, journal_state.intents
    if journal_state.resolved or journal_state.planned:
        return {"files": len(done), "uploaded": 0, "reconciled": 0}
    files = wanted(run_dir)
    uploaded = reconciled = 0
    for sha, media in files.items():
        if sha in done:
            continue
        if sha in intents:
            found = _reconcile(client, run_dir, media, set(done.values()))
            if found:
                record(run_dir, "upload_done", sha256=sha, file_id=found, reconciled=True)
                done[sha] = found
                reconciled += 1
                continue
        done[sha] = _upload(client, run_dir, sha, media)
        uploaded += 1
        progress.stage(f"uploaded {len(done)}/{len(files)}: {media['path']}")
    _resolve(run_dir, done)
    record(run_dir, "uploads_resolved", files=len(done))
    return {"files": len(done), "uploaded": uploaded, "reconciled": reconciled}


def _upload(client: Any, run_dir: Path, sha: str, media: dict, **extra: Any) -> str:
    name = upload_name(media, run_dir)
    record(run_dir, "upload_intent", sha256=sha, name=name, bytes=media["bytes"], **extra)
    try:
        with open(media["path"], "rb") as fh:
            if _sha256_of(fh) != sha:  # changed since prepare: its pages, limits and cost were for other bytes
                raise BatchpilotError(f"{media['path']} has changed since the run was prepared",
                                      "restore it, or prepare the run again into a new directory")
            meta = client.beta.files.upload(file=(name, fh, media["media_type"]), betas=[FILES_BETA])
    except OSError as exc:
        raise BatchpilotError(f"cannot read {media['path']}: {exc.strerror or exc}",
                              "restore the file (the run was prepared from it), then re-run") from None
    crash.point("after-upload-before-journal")
    record(run_dir, "upload_done", sha256=sha, file_id=meta.id, reconciled=False)
    return meta.id


def restore_uploads(client: Any, run_dir: Path, custom_ids: Any, progress: Progress) -> int:
    """Upload again the deleted files the items `custom_ids` need; rewrite requests.jsonl. Returns how many.

    Each file's latest `upload_done` is its current id. One whose current id was deleted is uploaded again
    (journaled before and after); an intent left without its done by a kill is reconciled first, as in
    `ensure_uploads`. Every older id of a file then becomes its current one in requests.jsonl, so a rerun
    after a kill between the upload and the rewrite still rewrites."""
    run_dir = Path(run_dir)
    if not uses_uploads(run_dir):
        return 0
    journal_state = _journal_state(run_dir)
    done, pending, deleted, history = journal_state.done, journal_state.pending, journal_state.deleted, journal_state.history
    if not deleted:
        return 0  # the uploads of a job that has not ended are all alive
    files = wanted(run_dir)
    needed = {}
    for item in iter_jsonl(run_dir / "items.jsonl", tolerate_torn_tail=False):
        sha = (item.get("media") or {}).get("sha256")
        if sha and item["custom_id"] in custom_ids and done.get(sha) in deleted:
            needed[sha] = files[sha]
    restored = 0
    for sha, media in needed.items():
        old = done[sha]
        found = _reconcile(client, run_dir, media, set(history)) if sha in pending else None
        if found:
            record(run_dir, "upload_done", sha256=sha, file_id=found, reconciled=True, replaces=old)
        else:
            found = _upload(client, run_dir, sha, media, replaces=old)
        done[sha], history[found] = found, sha
        restored += 1
        progress.stage(f"uploaded again {restored}/{len(needed)}: {media['path']} (its upload was deleted)")
    stale = {fid: done[sha] for fid, sha in history.items() if done[sha] != fid and done[sha] not in deleted}
    if stale:
        _replace_ids(run_dir, stale)
    return restored


def _replace_ids(run_dir: Path, stale: dict[str, str]) -> None:
    """requests.jsonl with each stale file id (a JSON string) replaced by its file's current id (atomic)."""
    path = run_dir / "requests.jsonl"
    quoted = {f'"{old}"'.encode(): f'"{new}"'.encode() for old, new in stale.items()}
    with open(path, "rb") as src, atomic_stream(path, binary=True) as dst:
        for line in src:
            if b'"file_id"' in line:
                for old, new in quoted.items():
                    line = line.replace(old, new)
            dst.write(line)


def _sha256_of(fh: Any) -> str:
    """The sha256 of an open file, read in chunks; the file is left rewound for the upload."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest()


def _reconcile(client: Any, run_dir: Path, media: dict, claimed: set[str]) -> str | None:
    """The id of an upload of this file by this run whose answer was lost: same name and size, not claimed yet."""
    name = upload_name(media, run_dir)
    for meta in client.beta.files.list(limit=LIST_LIMIT, betas=[FILES_BETA]):
        if meta.filename == name and meta.size_bytes == media["bytes"] and meta.id not in claimed:
            return meta.id
    return None


def _resolve(run_dir: Path, ids: dict[str, str]) -> None:
    """requests.jsonl with every placeholder replaced by its file id (streamed, atomic)."""
    path = run_dir / "requests.jsonl"
    marker = PENDING_UPLOAD.encode()
    with open(path, "rb") as src, atomic_stream(path, binary=True) as dst:
        for line in src:
            while marker in line:
                at = line.index(marker) + len(marker)
                sha = line[at:at + 64].decode("ascii")
                if sha not in ids:
                    raise BatchpilotError(f"{path.name} names an attachment ({sha[:12]}...) that items.jsonl does not",
                                          "prepare the run again into a new directory")
                line = line.replace(marker + sha.encode(), ids[sha].encode())
            dst.write(line)


def finish_uploads(client: Any, run_dir: Path, ended: bool, progress: Progress) -> dict | None:
    """Delete the run's uploads when the job `ended` with nothing to retry (unless --keep-uploads)."""
    run_dir = Path(run_dir)
    if not uses_uploads(run_dir):
        return None
    journal_state = _journal_state(run_dir)
    done, deleted = journal_state.done, journal_state.deleted
    live = [fid for fid in done.values() if fid not in deleted]
    if open_run(run_dir).get("keep_uploads"):
        return {"kept": len(live), "why": "--keep-uploads"}
    if not ended:
        return {"kept": len(live), "why": "items may still be retried; the run that ends the job deletes them"}
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    for file_id in live:
        try:
            client.beta.files.delete(file_id, betas=[FILES_BETA])
        except anthropic.NotFoundError:
            pass  # already gone (deleted by hand, or by a run killed before it journaled the delete)
        record(run_dir, "upload_deleted", file_id=file_id)
    if live:
        progress.stage(f"deleted {len(live)} uploaded file(s)")
    return {"deleted": len(live) + len(deleted), "kept": 0}
