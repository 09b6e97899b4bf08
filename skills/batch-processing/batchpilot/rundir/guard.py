"""Where a run belongs: the mode it was prepared for and whether it runs against the local emulator.

A run remembers both in run.json (`mode`, `emulated`), so a command of another mode refuses instead of, say,
turning an agents run into a paid Message Batch, and the API never silently replaces the emulator (or the other
way round). `emulated` is fixed by the first command that talks to an API for the run: `run --emulate` fixes it
at once; a run made by `prepare` is fixed by its first `submit`/`direct`/`retry` (emulated with `--emulate`,
real when a key is set). From then on `--emulate` is redundant on an emulated run, and refused on a real one
once anything reached the API (a batch, or an answer); before that, `--emulate` switches it explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import atomic_write_json
from batchpilot.core.modes import next_for_mode
from batchpilot.rundir.journal import iter_journal
from batchpilot.rundir.lock import run_lock
from batchpilot.rundir.manifest import open_run

API_MODES = ("batch", "direct")
EMULATOR_DIR = "emulator"  # an emulated batch run keeps its emulator's account here


def run_is_emulated(run_dir: Path, manifest: dict | None = None) -> bool:
    """True for a run fixed to the emulator (also a run from before `emulated` was recorded that has one)."""
    manifest = open_run(run_dir) if manifest is None else manifest
    bound = manifest.get("emulated")
    return bool(bound) if bound is not None else (Path(run_dir) / EMULATOR_DIR).is_dir()


def bind_emulated(run_dir: Path, emulate: bool) -> bool:
    """Whether this command talks to the emulator for `run_dir`: the run's own answer when it has one.

    A new answer is recorded by `label` when the command has succeeded (under the run lock, so call this
    outside it is not required)."""
    manifest = open_run(run_dir)
    bound = manifest.get("emulated")
    if bound is None and (Path(run_dir) / EMULATOR_DIR).is_dir():
        bound = True
    if bound is True:
        return True
    if bound is False:
        if emulate and reached_the_api(run_dir):
            raise BatchpilotError(f"{run_dir} runs against the real API, not the emulator",
                                  "drop --emulate: its batches and results are the API's; to rehearse, start a new "
                                  "run with `run --emulate`")
        if emulate:  # nothing ever reached the API (it was unreachable, or refused the key): an explicit switch
            _PENDING[_key(run_dir)] = True
            return True
        return False
    if emulate or os.environ.get("ANTHROPIC_API_KEY", "").strip():
        _PENDING[_key(run_dir)] = emulate
    return emulate


# Answers decided by `bind_emulated` in this process, written into run.json only once the command succeeded
# (`label`, called as its receipt is printed): a command that fails on bad input leaves the run unchanged.
_PENDING: dict[str, bool] = {}


def _key(run_dir: Path) -> str:
    return str(Path(run_dir).absolute())


def record_emulated(run_dir: Path, emulated: bool, replace: bool = False) -> None:
    """Write `emulated` into run.json (once, unless `replace`: a later different answer is refused by
    `bind_emulated` as soon as the run has reached the API)."""
    with run_lock(run_dir):
        manifest = open_run(run_dir)
        if manifest.get("emulated") is None or (replace and manifest.get("emulated") != emulated):
            atomic_write_json(Path(run_dir) / "run.json", {**manifest, "emulated": emulated})


REMOTE_EVENTS = ("batch_created",)


def reached_the_api(run_dir: Path) -> bool:
    """Whether the run holds anything of the API's: a created batch, or an answer. Streams the files; a run
    that only met a closed port or a rejected key has neither. (An intent to create a batch whose call
    failed does not count: the call is reconciled against the API's list only on the real API.)"""
    for event in iter_journal(run_dir):
        if event.get("event") in REMOTE_EVENTS:
            return True
    results = Path(run_dir) / "results.jsonl"
    if not results.is_file():
        return False
    with open(results, "rb") as fh:
        return any(b'"type":"succeeded"' in line for line in fh)


def require_mode(run_dir: Path, command: str, modes: tuple[str, ...], *, switched: bool = False) -> dict:
    """The run's manifest, or an Error/Hint when the run was prepared for a mode `command` does not serve.

    `switched` is true when the run already has work of one of `modes` (e.g. batch rounds after
    `retry --mode batch` on a direct run): then the command serves it."""
    manifest = open_run(run_dir)
    mode = manifest.get("mode")
    if mode is None or mode in modes or switched:
        return manifest
    hint = f"it continues with `{next_for_mode(mode, Path(run_dir))}`"
    if mode in API_MODES:
        hint += "; `retry RUN --mode batch|direct` switches an API run's mode explicitly"
    raise BatchpilotError(f"{run_dir} is a {mode}-mode run: `{command}` is for {' or '.join(modes)} runs", hint)


def label(receipt: dict) -> dict:
    """A receipt about a run, with `emulated` after its command: a rehearsal's receipts say so, every one.
    Called once the command succeeded: it also records the run's answer that this command decided."""
    run = receipt.get("run")
    if not isinstance(run, str) or not (Path(run) / "run.json").is_file():
        return receipt
    try:
        pending = _PENDING.pop(_key(Path(run)), None)
        if pending is not None:
            record_emulated(Path(run), pending, replace=True)
        if "emulated" in receipt:
            return receipt
        emulated = run_is_emulated(Path(run))
    except BatchpilotError:
        return receipt  # a damaged manifest: the command's own output stands as it is
    head = {k: receipt[k] for k in ("command",) if k in receipt}
    return {**head, "emulated": emulated, **receipt}
