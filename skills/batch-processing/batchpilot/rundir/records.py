"""Result records: the one line shape every executor appends to `results.jsonl`.

A record is a Message Batches result line, `{"custom_id", "result": {"type": "succeeded" | "errored" |
"canceled" | "expired", "message" | "error"}}`, plus `"attempt"`, `"mode"` and `"at"`, so merge,
retry and report never care which executor wrote it. An errored result nests the API's own error body,
`{"type": "error", "error": {"type", "message"}}`, exactly as a batch results line does. `custom_id_of` reads
the id of a request or result line without parsing the rest of it.
"""

from __future__ import annotations

import re
from typing import Any

from batchpilot.api.failures import error_body
from batchpilot.core.clock import now_iso
from batchpilot.core.files import damaged, parse_json

_CUSTOM_ID = re.compile(rb'^\{"custom_id":"([A-Za-z0-9_-]{1,64})"')


def errored(type_: str, message: str, **extra: Any) -> dict:
    """An `errored` result holding the API-shaped error body."""
    return {"type": "errored", "error": error_body(type_, message, **extra)}


def result_record(custom_id: str, result: dict, attempt: int, mode: str, **extra: Any) -> dict:
    """One results.jsonl line: the batch result line plus attempt, mode and the time it was recorded."""
    return {"custom_id": custom_id, "result": result, "attempt": attempt, "mode": mode, "at": now_iso(), **extra}


def custom_id_of(line: bytes, where: str = "requests.jsonl") -> str:
    """The custom_id of a request or result line (fast path for the compact lines batchpilot writes); a line
    without one is an Error naming `where` (file and line), since the run directory was edited or damaged."""
    m = _CUSTOM_ID.match(line)
    if m:
        return m.group(1).decode("ascii")
    try:
        record = parse_json(line)
    except ValueError as exc:
        raise damaged(where, f"not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
        raise damaged(where, "a line without its custom_id")
    return record["custom_id"]
