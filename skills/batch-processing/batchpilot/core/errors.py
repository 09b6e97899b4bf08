"""The one project error type.

Domain code raises `BatchpilotError(message, hint)` for anything the user can fix; the CLI prints it once as
`Error: <message>` and `Hint: <hint>` on stderr and exits 1. Unexpected exceptions are bugs and keep their
traceback.
"""

from __future__ import annotations

import errno
import os


class BatchpilotError(Exception):
    """A user-fixable failure: what went wrong (quoting the value) and what to do about it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


_OS_HINTS = {
    errno.ENOSPC: "free some disk space, then re-run the same command: it resumes from the run directory",
    errno.EDQUOT: "free some space within your disk quota, then re-run the same command: it resumes",
    errno.EROFS: "the file system is read-only: use a --run directory on a writable disk, or remount it",
    errno.EACCES: "check the permissions of that path (it must be writable for a run's files), then re-run",
    errno.EPERM: "check the permissions of that path (it must be writable for a run's files), then re-run",
    errno.ENOENT: "check the path; a file of the run directory may have been moved or deleted",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or lower the concurrency, then re-run",
    errno.ENOTEMPTY: "another process wrote the same path at the same time; re-run the command",
    errno.EEXIST: "another process wrote the same path at the same time; re-run the command",
}


def from_os_error(exc: OSError) -> BatchpilotError:
    """An OSError that reached the command line, as an Error naming the path and the errno in words
    (`cannot write out/x.json: No space left on device (ENOSPC)`) with a Hint for that errno."""
    code = exc.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    words = exc.strerror or (os.strerror(code) if code else str(exc) or type(exc).__name__)
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    where = f" {paths}" if paths else ""
    return BatchpilotError(f"cannot use{where}: {words}" + (f" ({name})" if name else ""),
                           _OS_HINTS.get(code, "check that path and the disk it is on, then re-run the same command"))
