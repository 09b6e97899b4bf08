"""Human progress on stderr: a redrawn bar on a terminal, one line per stage otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Report stages and counts. Bars only on a terminal; pipes and logs get one line per stage."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._drawn = False

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
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        if total:
            width = 30
            filled = int(width * done / total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"\r[{bar}] {done}/{total} {label}"
        else:
            text = f"\r{done} {label}"
        self.stream.write(text[:200])
        self.stream.flush()
        self._drawn = True

    def _end_bar(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False

    def done(self) -> None:
        self._end_bar()
