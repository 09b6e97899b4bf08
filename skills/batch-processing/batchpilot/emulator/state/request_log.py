"""The request log (`--log FILE`): one JSON line per HTTP request, flushed as it is written.

A line: `{"time", "method", "path", "status", "batch_id", "requests", "usage", "fault", "ms"}` —
`time` RFC 3339 (wall clock), `path` without the query string, `batch_id` for batch endpoints (else null),
`requests` the number of requests a batch create carried (else null), `usage` the answer's token usage for
POST /v1/messages (else null), `fault` the injected fault kind (else null), `ms` the time spent serving.
POST /v1/messages lines whose body was a JSON object also carry `request_key`: the responder's digest of the
body minus `stream` and `metadata` (and the seed), so the same request sent twice, a client's retry or a
streaming request and its non-streaming fallback, has the same key whatever the answer was. A request that
a scenario step answered carries `scenario_step`, the step's index in the scenario.
Tests and benchmarks count duplicates, 429s and tokens from it: the server's view, not the client's.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any


class RequestLog:
    """Appends JSON lines to `path` (nothing when path is None); safe across server threads."""

    def __init__(self, path: str | None):
        self._handle = open(path, "a", encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        if self._handle is None:
            return
        fields = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"), **fields}
        line = json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if self._handle is not None:
                self._handle.write(line)
                self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
