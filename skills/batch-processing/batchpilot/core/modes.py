"""The execution modes: their words, and the command that runs a run prepared for each.

Light on purpose: the CLI reads these while it builds its options, before any stage is imported.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from batchpilot.core.shell import next_command

MODES = ("batch", "direct", "agents", "headless")
EXECUTOR_COMMANDS = {"batch": "submit", "direct": "direct", "agents": "fanout", "headless": "headless"}


def next_for_mode(mode: str, run: Path) -> str:
    """The command that executes a run prepared for `mode`."""
    return next_command(EXECUTOR_COMMANDS[mode], run)


def api_key_present() -> bool:
    """Whether ANTHROPIC_API_KEY is set: without it, batch and direct cannot do real work here."""
    return bool(os.environ.get("ANTHROPIC_API_KEY", "").strip())


def claude_on_path() -> bool:
    """Whether a `claude` CLI is on PATH: headless mode runs items through it, on the user's Claude Code login."""
    return shutil.which("claude") is not None
