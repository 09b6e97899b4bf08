"""Human progress on stderr: a redrawn bar on a terminal, one line per stage otherwise, nothing with --quiet.

A redrawn line never exceeds the terminal's width (a longer one wraps, and every redraw would leave a
fragment behind): the bar shrinks first, then the label is cut. The last frame drawn before the line ends
shows the final count.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

BAR_MAX = 30
BAR_MIN = 8


class Progress:
    """Report stages and counts. Bars only on a terminal; pipes and logs get one line per stage."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._drawn = False
        self._frame: tuple[int, int | None, str] | None = None  # the latest values, drawn or not

    def stage(self, message: str) -> None:
        """One line saying what is happening now."""
        if self.quiet:
            return
        self._end_bar()
        print(message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        """A warning: printed even with --quiet."""
        self._end_bar()
        print(f"Warning: {message}", file=self.stream, flush=True)

    def update(self, done: int, total: int | None, label: str = "") -> None:
        """Redraw the bar (at most 10 times a second); silent when not on a terminal."""
        if self.quiet or not self.tty:
            return
        self._frame = (done, total, label)
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        self._draw(done, total, label)

    def _draw(self, done: int, total: int | None, label: str) -> None:
        self.stream.write("\r" + fit_line(done, total, label, terminal_columns(self.stream)) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def _end_bar(self) -> None:
        if self._drawn:
            if self._frame is not None:
                self._draw(*self._frame)  # the final count, even if the last update was throttled
            self.stream.write("\n")
            self._drawn = False
        self._frame = None

    def done(self) -> None:
        self._end_bar()


def terminal_columns(stream: TextIO | None = None) -> int:
    """The width of the terminal `stream` writes to (COLUMNS when set, else the tty's, else 80). Asked of the
    progress stream itself: stdout is often a pipe (the receipt) while stderr is the terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(20, int(columns))
    try:
        return max(20, os.get_terminal_size((stream or sys.stderr).fileno()).columns)
    except (OSError, ValueError, AttributeError):
        return 80


def fit_line(done: int, total: int | None, label: str, columns: int) -> str:
    """`[###---] done/total label` in at most columns-1 characters (the last column would wrap on some terminals)."""
    room = columns - 1
    if not total:
        return f"{done} {label}"[:room]
    count = f" {done}/{total} "
    width = max(BAR_MIN, min(BAR_MAX, room - len(count) - len(label) - 2))
    filled = int(width * min(done, total) / total)
    line = f"[{'#' * filled}{'-' * (width - filled)}]{count}{label}"
    return line if len(line) <= room else line[: room - 1] + "…"
