"""Agents mode: Claude Code subagents (the Task/Agent tool) do the items, in waves, without flooding the
orchestrating agent's context.

The orchestrator never sees an item or an answer. `fanout_run` writes one self-contained prompt file per
item (`prompts/<custom_id>.md`: instructions, the item or its file path, the schema, the absolute path of
the result file, and the rule to reply with one short line) and lists one wave of tasks whose prompt is a
one-line pointer to its file. The subagents write `outputs/<custom_id>.json` and reply `done`.
`collect_run` reads `outputs/`, validates each file against the run's schema, appends one result record per
new file (hashed, so collecting twice records nothing twice), notes the validator's message in the prompt
file of every rejected item, and lists the next wave: retries first, then items not yet sent. The run
directory is the ledger, so after a context compaction `collect` says exactly where the job stands.

Waves are at most `wave_size` tasks (default 10, the Agent tool's concurrency). Each printed wave is
journalled (`wave` events); an item listed `max_attempts` times, or rejected that often, is given up and
left to merge to report.

Output files are only ever read from `<run>/outputs/<valid custom_id>.json` after checking containment;
symlinks, non-regular files and stray names are ignored, whatever an item's id or content says.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import sys
from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import append_jsonl, atomic_write, iter_jsonl, safe_dir
from batchpilot.core.paths import worker_agent
from batchpilot.core.shell import next_command
from batchpilot.prepare.items import CUSTOM_ID_RE
from batchpilot.results.judge import RunView, open_view
from batchpilot.results.outcomes import ItemState, note, scan_outcomes, sha256
from batchpilot.executors.prompts import (RETRY_MARK, iter_prepared, run_template, subagent_prompt, template_variables,
                                with_retry_note)
from batchpilot.rundir.records import result_record
from batchpilot.rundir.journal import journal
from batchpilot.rundir.lock import holds_run_lock

WAVE_SIZE = 10  # the Agent tool runs up to 10 subagents at once from one message
MAX_ATTEMPTS = 3
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
MODEL_HINTS = ("haiku", "sonnet", "opus")
MAX_LISTED_ERRORS = 10
SEND = "ONE message: an Agent call per task (its description and prompt; this receipt's subagent_type and model). Then run next."


# ------------------------------------------------------------------------------------------- safe paths


def outputs_dir(run_dir: Path) -> Path:
    """`<run>/outputs`, created if needed; an error if it is a symlink or not a directory."""
    return safe_dir(Path(run_dir).resolve(), "outputs")


def output_path(run_dir: Path, custom_id: str) -> Path:
    """`<run>/outputs/<custom_id>.json`, checked: a valid id, and a path that stays inside outputs/."""
    if not isinstance(custom_id, str) or not CUSTOM_ID_RE.fullmatch(custom_id):  # match() lets "id\n" through
        raise BatchpilotError(f"custom_id {custom_id!r} is not a valid id",
                              "ids may use letters, digits, - and _ (1-64); the run directory was edited or damaged")
    out = Path(run_dir).resolve() / "outputs"
    path = out / f"{custom_id}.json"
    if os.path.dirname(os.path.normpath(path)) != str(out) or path.name != f"{custom_id}.json":
        raise BatchpilotError(f"the output path for {custom_id!r} leaves {out}", "report this as a bug")
    return path


def read_output(path: Path) -> bytes | None:
    """The bytes of a regular, non-symlink output file (None for anything else); capped at MAX_OUTPUT_BYTES + 1."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.EACCES, errno.EISDIR):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_OUTPUT_BYTES + 1)
    finally:
        os.close(fd)


def _output_names(out: Path) -> tuple[set[str], int]:
    """Names of the regular files in outputs/ and the count of other entries (symlinks, directories, ...)."""
    names, other = set(), 0
    with os.scandir(out) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                names.add(entry.name)
            else:
                other += 1
    return names, other


# ----------------------------------------------------------------------------------------------- ledger


def _listed(run_dir: Path) -> tuple[dict[str, int], list[str] | None, dict]:
    """How often each id was listed in a wave, the last wave's ids, and the settings fanout was last given."""
    counts: dict[str, int] = {}
    last: list[str] | None = None
    settings: dict = {}
    for event in iter_jsonl(run_dir / "journal.jsonl"):
        if event.get("event") == "wave" and isinstance(event.get("ids"), list):
            last = [str(i) for i in event["ids"]]
            for cid in last:
                counts[cid] = counts.get(cid, 0) + 1
        elif event.get("event") == "fanout":
            settings = {k: event.get(k) for k in ("model_hint", "wave_size") if event.get(k) is not None}
    return counts, last, settings


def _classify(state: ItemState | None, listed: int, max_attempts: int) -> str:
    if state is not None and state.done:
        return "succeeded"
    rejected = state.rejected if state else 0
    if max(rejected, listed) >= max_attempts:
        return "gave_up"
    if state is not None and state.last_error:
        return "invalid"
    return "missing" if listed else "unsent"


def _pending_order(statuses: dict[str, str], order: list[str]) -> list[str]:
    """Retries first (invalid, then missing), then items never sent, each in input order."""
    rank = {"invalid": 0, "missing": 1, "unsent": 2}
    return sorted((cid for cid in order if statuses[cid] in rank), key=lambda c: rank[statuses[c]])


def _task(run_dir: Path, cid: str) -> dict:
    return {"id": cid, "description": cid, "prompt": f"Follow {run_dir / 'prompts' / (cid + '.md')}"}


def _model_hint(view: RunView, flag: str | None, journalled: str | None) -> str | None:
    hint = flag or journalled or view.manifest.get("subagent_model")  # flag > last fanout's flag > template
    return hint if hint in MODEL_HINTS else None


def _wave(view: RunView, pending: list[str], wave_size: int, wave: int, last_listed: list[str] | None) -> tuple[list[dict], int]:
    """The tasks of wave `wave` (1-based) of `pending`, journalled as listed unless it repeats the last listing."""
    waves = math.ceil(len(pending) / wave_size)
    if pending and not 1 <= wave <= waves:
        raise BatchpilotError(f"wave {wave} does not exist: {len(pending)} pending items make {waves} wave(s)",
                              f"pass --wave between 1 and {waves}")
    ids = pending[(wave - 1) * wave_size: wave * wave_size]
    if ids and ids != last_listed:
        journal(view.run_dir, "wave", wave=wave, ids=ids)
    return [_task(view.run_dir, cid) for cid in ids], waves


def _check_wave_size(wave_size: int) -> None:
    if wave_size < 1:
        raise BatchpilotError(f"wave size {wave_size} must be at least 1", "use --wave-size 10 (the Agent tool's concurrency)")
    if wave_size > WAVE_SIZE:
        print(f"Warning: waves of {wave_size} exceed the {WAVE_SIZE} subagents Claude Code runs at once", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- fanout


@holds_run_lock
def fanout_run(run_dir: Path, wave_size: int | None = None, wave: int | None = None, model_hint: str | None = None,
               max_attempts: int = MAX_ATTEMPTS) -> dict:
    """Write every item's prompt file and return the receipt listing one wave of Agent tasks.

    `wave_size` and `model_hint` are remembered in the journal for later `collect` calls.
    """
    if model_hint is not None and model_hint not in MODEL_HINTS:
        raise BatchpilotError(f"subagent model {model_hint!r} is not one of {', '.join(MODEL_HINTS)}", "pick one of them")
    view = open_view(Path(run_dir).resolve())
    run = view.run_dir
    outputs_dir(run)
    prompts = safe_dir(run, "prompts")
    template = run_template(run, view.manifest)
    variables = template_variables(view.manifest)
    name = (view.manifest.get("template") or {}).get("name") or "batch"
    states = scan_outcomes(view)
    listed, last_listed, settings = _listed(run)
    wave_size = wave_size or settings.get("wave_size") or WAVE_SIZE
    _check_wave_size(wave_size)
    written, order, statuses = 0, [], {}
    for item, params in iter_prepared(run):
        cid = item["custom_id"]
        order.append(cid)
        statuses[cid] = _classify(states.get(cid), listed.get(cid, 0), max_attempts)
        text = subagent_prompt(item, params, view.schema, output_path(run, cid), template, variables, name)
        state = states.get(cid)
        if state is not None and state.last_error and not state.done:
            text = with_retry_note(text, state.last_error)
        written += _write_if_changed(prompts / f"{cid}.md", text)
    hint = _model_hint(view, model_hint, settings.get("model_hint"))
    wanted = dict(settings, wave_size=wave_size, **({"model_hint": model_hint} if model_hint else {}))
    if wanted != settings:
        journal(run, "fanout", **wanted)
    pending = _pending_order(statuses, order)
    number = wave or 1
    tasks, waves = _wave(view, pending, wave_size, number, last_listed)
    return {
        "command": "fanout",
        "run": str(run),
        "items": len(order),
        "prompts": str(prompts),
        "prompts_written": written,
        "succeeded": sum(s == "succeeded" for s in statuses.values()),
        "pending": len(pending),
        "gave_up": sum(s == "gave_up" for s in statuses.values()),
        "wave": number if tasks else None,
        "waves": waves,
        "waves_after_this": max(0, waves - number),
        "model": hint,
        "subagent_type": worker_agent() if tasks else None,
        "tasks": tasks,
        "send": SEND if tasks else None,
        "next": next_command("collect", run) if tasks else next_command("merge", run),
    }


def _write_if_changed(path: Path, text: str) -> int:
    try:
        if path.read_text(encoding="utf-8") == text:
            return 0
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(path, text)
    return 1


# --------------------------------------------------------------------------------------------- collect


def _record_output(view: RunView, cid: str, data: bytes, state: ItemState) -> dict:
    """The result record of one new output file (valid or not), and the state updated with its verdict."""
    digest = sha256(data)
    if len(data) > MAX_OUTPUT_BYTES:
        result = {"type": "errored", "error": {"type": "output_too_large",
                                               "message": f"the output file is larger than {MAX_OUTPUT_BYTES} bytes"}}
        error: str | None = result["error"]["message"]
        state.rejected += 1
        state.last_error = error
    else:
        text = data.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        # A parsed object is handed over as is; anything else as text, which merge judges (and rejects) the same way.
        result = {"type": "succeeded", "output": parsed if isinstance(parsed, dict) else text}
        note(state, view.judge(result)[1])
    state.attempts += 1
    state.hashes.add(digest)
    return result_record(cid, result, state.attempts, "agents", output_sha256=digest)


@holds_run_lock
def collect_run(run_dir: Path, wave_size: int | None = None, max_attempts: int = MAX_ATTEMPTS) -> dict:
    """Record the new output files, note rejections in their prompt files, and list the next wave.

    `wave_size` defaults to the one fanout was last given (else 10).
    """
    view = open_view(Path(run_dir).resolve())
    run = view.run_dir
    out = outputs_dir(run)
    names, other = _output_names(out)
    states = scan_outcomes(view)
    listed, last_listed, settings = _listed(run)
    wave_size = wave_size or settings.get("wave_size") or WAVE_SIZE
    _check_wave_size(wave_size)
    order, statuses, errors = [], {}, []
    buffer: list[dict] = []
    recorded = known = 0
    for item in iter_jsonl(run / "items.jsonl", require=("custom_id",)):
        cid = item["custom_id"]
        order.append(cid)
        path = output_path(run, cid)
        state = states.setdefault(cid, ItemState())
        if path.name in names:
            known += 1
            data = read_output(path)
            if data is not None and sha256(data) not in state.hashes:
                buffer.append(_record_output(view, cid, data, state))
                recorded += 1
                if len(buffer) >= 200:  # bounded memory; every record is fsynced before its item is reported
                    append_jsonl(run / "results.jsonl", buffer)
                    buffer.clear()
        statuses[cid] = status = _classify(state, listed.get(cid, 0), max_attempts)
        if status in ("invalid", "gave_up") and state.last_error and len(errors) < MAX_LISTED_ERRORS:
            errors.append({"id": cid, "error": state.last_error})
        if status == "invalid":
            _note_rejection(run / "prompts" / f"{cid}.md", state.last_error or "")
    if buffer:
        append_jsonl(run / "results.jsonl", buffer)
    counts = {k: sum(s == k for s in statuses.values()) for k in ("succeeded", "invalid", "missing", "unsent", "gave_up")}
    if recorded:
        journal(run, "collected", recorded=recorded, counts=counts)
    pending = _pending_order(statuses, order)
    tasks, waves = _wave(view, pending, wave_size, 1, last_listed)
    return {
        "command": "collect",
        "run": str(run),
        "items": len(order),
        "recorded": recorded,
        "counts": counts,
        "ignored_files": len(names) - known + other,
        "errors": errors,
        "pending": len(pending),
        "waves_remaining": waves,
        "model": _model_hint(view, None, settings.get("model_hint")),
        "subagent_type": worker_agent() if tasks else None,
        "tasks": tasks,
        "send": SEND if tasks else None,
        "next": next_command("collect", run) if tasks else next_command("merge", run),
    }


def _note_rejection(prompt: Path, message: str) -> None:
    """Put the validator's message into a rejected item's prompt file (no-op when it is already there)."""
    try:
        text = prompt.read_text(encoding="utf-8")
    except OSError:
        return  # no prompt yet: fanout writes it, with the note, from the results
    updated = with_retry_note(text, message)
    if updated != text:
        atomic_write(prompt, updated)


__all__ = ["fanout_run", "collect_run", "output_path", "outputs_dir", "read_output", "RETRY_MARK", "WAVE_SIZE"]
