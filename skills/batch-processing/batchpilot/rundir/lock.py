"""The run lock: one process at a time changes a run; readers never wait for it.

Every command that writes a run directory (submit, fetch, cancel, retry, direct, headless, fanout, collect,
merge, run, and `status` when it polls) holds `run_lock` while it works. The lock is an `flock` on
`RUN/.lock`, so the kernel drops it when its holder dies, however it dies: a lock left by a dead process is
simply taken. Its holder writes its pid, its command line and the time into the file, so a second writer
fails at once with an Error naming them. The lock is re-entrant inside one process (a `run` holds it and
the executor it calls takes it again), because two `flock`s of one process on two descriptors would
exclude each other.

`project_lock` is the same kind of lock on `.batchpilot/runs/.lock`, held (waited for) by `run` without
`--run` around "find a matching run or create one, then take its run lock", so two `run` commands typed at
once cannot both create a run: the second finds the first's run and fails on its run lock.
`try_run_lock` is for readers that write only when nobody else does (`status`): it yields whether it holds
the lock and never fails because a writer is busy. Readers that only read (`report`, `runs`) take no lock:
every file they read is written atomically or appended whole.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from batchpilot.core.clock import now_iso
from batchpilot.core.errors import BatchpilotError

LOCK_NAME = ".lock"
T = TypeVar("T")
_held: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, depth): the locks this process holds


def holder(lock_path: Path) -> dict:
    """What the lock file says about its holder: pid, command, since (empty when unreadable)."""
    try:
        value = json.loads(Path(lock_path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _command_line() -> str:
    # argv never holds the API key (it is read from the environment only), so it is safe to write down.
    words = ["batchpilot", *sys.argv[1:]]
    text = " ".join(words)
    return text if len(text) <= 300 else text[:297] + "..."


def _acquire(path: Path, wait: bool) -> int | None:
    """An fd holding the exclusive lock on `path`, or None when another process holds it (and not `wait`)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    # The holder's description, written in place: only the holder ever writes this file.
    info = json.dumps({"pid": os.getpid(), "command": _command_line(), "since": now_iso()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    return fd


@contextmanager
def _locked(path: Path, what: str, hint: str, required: bool, wait: bool = False) -> Iterator[bool]:
    key = str(path.resolve())
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield True
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    fd = _acquire(path, wait)
    if fd is None:
        if required:
            info = holder(path)
            who = f"pid {info.get('pid', '?')} (`{info.get('command', 'unknown command')}`, since {info.get('since', '?')})"
            raise BatchpilotError(f"{what} is locked by another process: {who}", hint)
        yield False
        return
    _held[key] = (fd, 1)
    try:
        yield True
    finally:
        del _held[key]
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock while changing it; a second writer fails at once naming the holder's pid and command."""
    path = Path(run_dir) / LOCK_NAME
    if not Path(run_dir).is_dir():
        yield  # nothing to lock: the command's own check of the run directory says what is wrong
        return
    with _locked(path, str(run_dir), "wait for that command to finish (or stop it), then re-run this one; "
                                     "nothing it has done is lost", required=True):
        yield


@contextmanager
def try_run_lock(run_dir: Path) -> Iterator[bool]:
    """The run lock when free (yields True); yields False, without waiting or failing, while a writer holds it."""
    with _locked(Path(run_dir) / LOCK_NAME, str(run_dir), "", required=False) as held:
        yield held


def lock_holder(run_dir: Path) -> dict:
    """The current holder of a run's lock as written in its lock file (may describe a finished process)."""
    return holder(Path(run_dir) / LOCK_NAME)


@contextmanager
def project_lock(runs_home: Path) -> Iterator[None]:
    """Hold `.batchpilot/runs/.lock` around finding or creating a run, so two `run`s cannot both create one."""
    runs_home = Path(runs_home)
    runs_home.mkdir(parents=True, exist_ok=True)
    # Waited for, not failed on: the holder only scans run.json files and creates a directory, then lets go
    # (the second `run` then finds the first one's run and meets its run lock).
    with _locked(runs_home / LOCK_NAME, str(runs_home), "", required=True, wait=True):
        yield


def holds_run_lock(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a function whose first argument is a run directory: it runs holding that run's lock."""

    @functools.wraps(fn)
    def wrapper(run_dir: Any, *args: Any, **kwargs: Any) -> T:
        with run_lock(Path(run_dir)):
            return fn(run_dir, *args, **kwargs)

    return wrapper
