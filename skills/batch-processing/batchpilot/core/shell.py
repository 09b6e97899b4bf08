"""Command lines that receipts and hints suggest, quoted for a POSIX shell."""

from __future__ import annotations

import shlex
from pathlib import Path


def next_command(*words: str | Path) -> str:
    """A suggested next command line, quoted for a POSIX shell."""
    return "batchpilot " + " ".join(shlex.quote(str(w)) for w in words)


def emulate_flag(emulate: bool) -> list[str]:
    """`["--emulate"]` for a rehearsal, else nothing: the words a suggested command needs to stay on the emulator."""
    return ["--emulate"] if emulate else []
