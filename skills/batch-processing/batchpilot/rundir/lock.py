"""The run lock: one process at a time changes a run."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from batchpilot.core.errors import BatchpilotError


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock: one process at a time changes a run. A killed holder releases it with its death."""
    import fcntl

    path = Path(run_dir) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchpilotError(f"another batchpilot process is working on {run_dir}",
                                  "wait for it to finish, or stop it; then re-run this command") from None
        yield
    finally:
        os.close(fd)
