"""The emulated clock: wall time, sped up by `time_scale`, plus whatever the admin endpoint has advanced it.

Batch timestamps, processing progress, expiry, archiving and prompt-cache TTLs all read this clock, so a test
can make 24 hours pass in a second (`time_scale=86400`) or jump ahead exactly (`advance(86400)`) without
sleeping. Rate-limit buckets deliberately use the real monotonic clock: they meter the client's real pace.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone


class Clock:
    """Emulated epoch seconds: start + elapsed wall seconds × scale + advanced offset."""

    def __init__(self, time_scale: float = 1.0):
        self.scale = float(time_scale)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._wall0 = time.time()
            self._mono0 = time.monotonic()
            self._offset = 0.0

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.scale + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += max(0.0, float(seconds))
        return self.now()


def iso(epoch: float | None) -> str | None:
    """RFC 3339 with microseconds and `Z`, as the API writes timestamps; None stays None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
