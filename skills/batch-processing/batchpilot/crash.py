"""A deterministic kill -9 for crash tests: production code that does nothing unless an env var asks.

`BATCHPILOT_CRASH_AFTER` selects the instant the process kills itself with SIGKILL (no cleanup, no flush —
exactly what `kill -9` does), so tests can prove that every command resumes from the journal:

* `journal:N` — right after the Nth journal write of this process (the write is fsynced first);
* a point name — when the code reaches `crash.point(name)`. The points:
  `after-create-before-journal` (the batch exists on the server, its id is not journaled yet),
  `mid-download` (part of a results file is on disk), `mid-record` (part of a batch's records appended to
  results.jsonl), `after-download-before-journal`, `after-cancel-before-journal`.

Several selectors may be given, comma-separated. Unset (always, outside tests), every call is one dict lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "BATCHPILOT_CRASH_AFTER"

_journal_writes = 0


def _selectors() -> list[str]:
    return [s.strip() for s in os.environ.get(CRASH_ENV, "").split(",") if s.strip()]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def point(name: str) -> None:
    """Die here if `name` is selected."""
    if CRASH_ENV in os.environ and name in _selectors():
        _die()


def journaled() -> None:
    """Count one journal write; die if this is the selected one."""
    global _journal_writes
    _journal_writes += 1
    if CRASH_ENV in os.environ and f"journal:{_journal_writes}" in _selectors():
        _die()
