"""A deterministic kill -9 for crash tests: production code that does nothing unless an env var asks.

`BATCHPILOT_CRASH_AFTER` selects the instant the process kills itself with SIGKILL (no cleanup, no flush —
exactly what `kill -9` does), so tests can prove that every command resumes from the journal:

* `journal:N` — right after the Nth journal write of this process (the write is fsynced first);
* `append:FILE:N` — right after the Nth fsynced `append_jsonl` to a file named FILE (`results.jsonl`,
  `journal.jsonl`, ...) by this process: the crash points of the executors that do not use the batch ledger
  (direct, collect, headless, merge's journal line);
* a point name — when the code reaches `crash.point(name)`. The points:
  `after-create-before-journal` (the batch exists on the server, its id is not journaled yet),
  `after-upload-before-journal` (a Files API upload answered, its file id not journaled yet),
  `mid-download` (part of a results file is on disk), `mid-record` (part of a batch's records appended to
  results.jsonl), `after-download-before-journal`, `after-cancel-before-journal`; `prepare-after-items`
  (items and requests written, not yet fsynced, the run not yet in place), `prepare-before-rename` (the
  complete run still under its hidden temporary name); `merge-mid-write` (part of the new merged.jsonl
  written to its temporary file), `merge-before-summary` (merged.jsonl replaced, summary.json not yet).

Several selectors may be given, comma-separated. Unset (always, outside tests), every call is one dict lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "BATCHPILOT_CRASH_AFTER"

_journal_writes = 0
_appends: dict[str, int] = {}


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


def appended(name: str) -> None:
    """Count one fsynced append to a file called `name`; die if this is the selected one."""
    if CRASH_ENV not in os.environ:
        return
    _appends[name] = _appends.get(name, 0) + 1
    if f"append:{name}:{_appends[name]}" in _selectors():
        _die()
