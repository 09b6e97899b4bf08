"""A `git diff` patch read one file's section at a time (`batchpilot.prepare.gitdiff` runs git and lists the files).

Each section starts at a `diff --git` line; a content line always starts with ` `, `+`, `-` or `\\`, so the
header cannot be forged by a file, provided lines are cut where git cuts them: at `\\n` only (the patch is
read as bytes, so a lone CR inside a line stays inside it). A section's text is kept up to a size cap; its
new-side line ranges are always counted in full, as the lines stream past.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Iterator

HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class Ranges:
    """New-side line ranges a patch section changes, fed one line at a time: its added lines; a deletion with
    nothing added in its place marks the line above it (the first line when it was at the top)."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        self.new, self.deleting = 0, False

    def _mark(self, n: int) -> None:
        if self.ranges and self.ranges[-1][1] >= n - 1:
            self.ranges[-1][1] = max(self.ranges[-1][1], n)
        else:
            self.ranges.append([n, n])

    def _flush(self) -> None:
        if self.deleting:
            self._mark(max(self.new - 1, 1))
        self.deleting = False

    def feed(self, line: str) -> None:
        head = HUNK_RE.match(line)
        if head:
            self._flush()
            self.new = int(head.group(3)) + (1 if head.group(4) == "0" else 0)  # `+N,0`: the deletion follows line N
        elif not self.new:
            return  # the section's header lines, before the first hunk
        elif line.startswith("+"):
            self._mark(self.new)
            self.new += 1
            self.deleting = False
        elif line.startswith("-"):
            self.deleting = True
        elif line.startswith(" "):
            self._flush()
            self.new += 1

    def done(self) -> list[list[int]]:
        self._flush()
        return self.ranges


@dataclass
class Section:
    """One file's part of the combined patch: its `diff --git` header, its text (None past the size cap) and
    its new-side ranges (always complete)."""

    header: str
    text: str | None
    changed: list[list[int]]


def read_sections(argv: list[str], cwd: str, max_bytes: int) -> Iterator[Section]:
    """The combined patch `argv` (a `git diff`) writes, one file's section at a time. Read as bytes
    and cut at `\n` only: a lone CR inside a line (old Mac files, a hostile file) must not start a new line,
    or a content line could pose as a `diff --git` header. A section's text is kept up to `max_bytes`."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    header, parts, size, ranges = None, [], 0, Ranges()

    def close() -> Section:
        return Section(header or "", "".join(parts) if size <= max_bytes else None, ranges.done())

    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            if line.startswith("diff --git "):
                if header is not None:
                    yield close()
                header, parts, size, ranges = line, [], 0, Ranges()
            size += len(raw)
            if size <= max_bytes:
                parts.append(line)
            elif parts:
                parts = []  # past the cap: the text is dropped, the ranges are still counted
            ranges.feed(line)
        if header is not None:
            yield close()
    finally:
        proc.stdout.close()
        proc.wait()
