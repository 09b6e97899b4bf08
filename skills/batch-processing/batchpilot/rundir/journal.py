"""The run's journal, `journal.jsonl`: append-only and fsynced. Every command that changes a run journals
before and after each remote side effect, and on restart reads the journal to pick up where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from batchpilot.core.clock import now_iso
from batchpilot.core.files import append_jsonl, iter_jsonl


def journal(run_dir: Path, event: str, **fields: Any) -> None:
    """Append one event to the run's journal (flushed and fsynced before returning)."""
    append_jsonl(Path(run_dir) / "journal.jsonl", [{"at": now_iso(), "event": event, **fields}])


def iter_journal(run_dir: Path) -> Iterator[dict]:
    """The run's journal events in order (a torn last line from a kill is ignored)."""
    return iter_jsonl(Path(run_dir) / "journal.jsonl")
