"""Result records: the one line shape every executor appends to `results.jsonl`.

A record is a Message Batches result line, `{"custom_id", "result": {"type": "succeeded" | "errored" |
"canceled" | "expired", "message" | "error"}}`, plus `"attempt"`, `"mode"` and `"at"` (DESIGN.md), so merge,
retry and report never care which executor wrote it. An errored result nests the API's own error body,
`{"type": "error", "error": {"type", "message"}}`, exactly as a batch results line does.
"""

from __future__ import annotations

from typing import Any

from batchpilot.core.clock import now_iso

# The API's error type for an HTTP status, for answers whose body does not name one.
ERROR_TYPES_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                         403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                         429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def error_type_for_status(status: int | None) -> str:
    """The API's error type for an HTTP status; `api_error` for any status the API does not name."""
    return ERROR_TYPES_BY_STATUS.get(status or 0, "api_error")


def error_body(type_: str, message: str, **extra: Any) -> dict:
    """The API's error body `{"type": "error", "error": {"type", "message"}}`, plus `extra` keys (request_id)."""
    return {"type": "error", "error": {"type": type_, "message": message}, **extra}


def errored(type_: str, message: str, **extra: Any) -> dict:
    """An `errored` result holding the API-shaped error body."""
    return {"type": "errored", "error": error_body(type_, message, **extra)}


def result_record(custom_id: str, result: dict, attempt: int, mode: str, **extra: Any) -> dict:
    """One results.jsonl line: the batch result line plus attempt, mode and the time it was recorded."""
    return {"custom_id": custom_id, "result": result, "attempt": attempt, "mode": mode, "at": now_iso(), **extra}
