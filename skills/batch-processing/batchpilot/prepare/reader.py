"""The one bounded reader every item source goes through: nothing is read that was not checked first.

* `kind_of(path)` names what a path is (`file`, `directory`, `FIFO`, `character device`, ...) without opening
  it: only regular files are ever opened, so a FIFO, a socket or `/dev/zero` cannot block or flood us.
* `open_regular(path)` opens without blocking and re-checks the opened descriptor (a path swapped for a FIFO
  between the check and the open is still refused), then returns a binary file object that stays
  non-blocking: a "regular" file that waits for data (`/proc/kmsg`) raises `BlockingIOError`, never hangs.
* `read_bounded(path, max_bytes)` reads a whole file item: size checked before reading, and never more than
  `max_bytes + 1` bytes read even if the file grows meanwhile.
* `sniff(head)` is the one "look at the first bytes, then decide" step: today NUL bytes mean binary; other
  document kinds decide here too.
* `bounded_lines(fh, limit)` yields the lines of a stream; a line longer than `limit` bytes is drained in
  fixed-size chunks and yielded as `None`, so a 1 GB line costs a chunk of memory, not a gigabyte.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO, Iterator

from batchpilot.core.errors import BatchpilotError

SNIFF_BYTES = 8192
CHUNK = 64 * 1024

_KINDS = [(stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")]


class NotRegular(OSError):
    """The path is a FIFO, device, socket or directory: never read as an item."""


class _NeverWait(io.BufferedReader):
    """A reader over a non-blocking descriptor: "no data yet" is an OSError, not a wait and not an end.

    Real files never say "no data yet"; kernel files such as /proc/kmsg stat as regular files and block
    forever on a blocking read (a walk of /proc would hang on it).
    """

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if data is None:
            raise BlockingIOError(errno.EAGAIN, "waits for data that may never come (not a file on disk)", self.raw.name)
        return data


def kind_name(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


def kind_of(path: str) -> str:
    """What `path` is (following symlinks), e.g. `file` or `FIFO (named pipe)`; raises OSError when missing."""
    return kind_name(os.stat(path).st_mode)


def open_regular(path: str) -> BinaryIO:
    """A binary file object for the regular file `path`; `NotRegular` for anything else, never blocking."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # checked before opening: opening a device or a socket can already act
        raise NotRegular(f"a {kind_name(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(f"a {kind_name(mode)}, not a regular file")
        raw = io.FileIO(fd, "rb")
        raw.name = path  # named in errors
        return _NeverWait(raw)  # kept non-blocking: see _NeverWait
    except BaseException:
        os.close(fd)
        raise


def open_source(path: str) -> BinaryIO:
    """`open_regular` for a whole-file item source (.jsonl, .csv): an Error/Hint instead of OSError."""
    try:
        return open_regular(path)
    except NotRegular as exc:
        raise BatchpilotError(f"items source {path!r} is {exc}",
                              "pass a regular .jsonl or .csv file; to stream, use --items - and pipe into stdin") from None
    except OSError as exc:
        raise BatchpilotError(f"cannot read {path}: {exc.strerror or exc}", "check the path and its permissions") from None


def check_stdin(fh: BinaryIO) -> None:
    """Refuse a stdin that is a device other than a terminal (`< /dev/zero` would never end a line)."""
    try:
        fd = fh.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return  # not a real descriptor (an in-memory stream): nothing to check
    if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and not os.isatty(fd):
        raise BatchpilotError(f"stdin is a {kind_name(mode)}, not lines of text",
                              "pipe or redirect a text file into --items -, e.g. --items - < list.txt")


def read_bounded(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file `path`; `ValueError(size)` when it is larger than `max_bytes`."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise ValueError(size)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the size check
        raise ValueError(len(data))
    return data


def sniff(head: bytes) -> tuple[str, str] | None:
    """`(reason, detail)` when the first bytes show the content is not text an item can carry, else None."""
    if b"\x00" in head[:SNIFF_BYTES]:
        return "binary", "contains NUL bytes"
    return None


def bounded_lines(fh: BinaryIO, limit: int) -> Iterator[bytes | None]:
    """The lines of `fh` (newline kept), each at most `limit` bytes; a longer one is skipped and yields None.

    Memory stays at one line plus one chunk whatever the input, even an endless stream without newlines.
    """
    buf = b""
    dropping = False
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            break
        start = 0
        while True:
            cut = chunk.find(b"\n", start)
            if cut < 0:
                if not dropping:
                    buf += chunk[start:]
                    if len(buf) > limit:
                        buf, dropping = b"", True
                break
            if dropping:
                dropping = False
                yield None
            else:
                line = buf + chunk[start:cut + 1]
                buf = b""
                yield line if len(line) <= limit + 1 else None  # + 1: the newline is not content
            start = cut + 1
    if dropping:
        yield None
    elif buf:
        yield buf
