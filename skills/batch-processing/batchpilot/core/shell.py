"""Command lines that receipts and hints suggest, quoted for a POSIX shell, runnable as printed.

A model inside Claude Code runs a receipt's `next` in its Bash tool, where `batchpilot` is usually not on PATH
and the working directory may have changed: so the command names the shim by its absolute path (quoted: install
paths can hold spaces) and every path argument is made absolute. A pip-installed copy (no shim next to the
package) names its console script, `batchpilot`, which pip put on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from batchpilot.core.paths import SKILL_DIR

SHIM = SKILL_DIR / "scripts" / "batchpilot"


def tool_command() -> str:
    """How to invoke the tool from any directory: the shim's absolute, quoted path, as the caller named it (the
    shim passes it on), or `batchpilot` when pip-installed (no shim beside the package)."""
    invoked = os.environ.get("BATCHPILOT_SHIM")
    if invoked and os.path.isabs(invoked) and os.path.isfile(invoked):
        return shlex.quote(invoked)
    return shlex.quote(str(SHIM)) if SHIM.is_file() else "batchpilot"


def next_command(*words: str | Path) -> str:
    """A suggested next command line, quoted for a POSIX shell; `Path` words become absolute paths."""
    return " ".join([tool_command(), *(shlex.quote(str(w.absolute() if isinstance(w, Path) else w)) for w in words)])



def absolute_source(word: str) -> str:
    """An item source or template reference as a suggested command should repeat it: a relative path or glob
    made absolute; `-` (stdin), `scheme:...` sources and bare names (a bundled template) unchanged."""
    if word == "-" or os.path.isabs(word) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", word):
        return word
    if os.sep not in word and not word.startswith(".") and not os.path.exists(word):
        return word  # a bundled template's name, or a bare glob that matched nothing here
    return os.path.abspath(word)
