"""The one project error type.

Domain code raises `BatchpilotError(message, hint)` for anything the user can fix; the CLI prints it once as
`Error: <message>` and `Hint: <hint>` on stderr and exits 1. Unexpected exceptions are bugs and keep their
traceback.
"""

from __future__ import annotations


class BatchpilotError(Exception):
    """A user-fixable failure: what went wrong (quoting the value) and what to do about it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
