"""Serve the emulator as a program (what `batchpilot emulate` does): on loopback, until SIGINT or SIGTERM.

`serve` builds the `EmulatorConfig` from command-line style options, listens, reports the base URL through
`on_ready` once the socket accepts connections, and returns the request counts when a signal stops it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from batchpilot.core.errors import BatchpilotError
from batchpilot.emulator.config import EmulatorConfig
from batchpilot.emulator.http.server import Emulator

POLL_SECONDS = 0.5  # how often the main thread looks for the stop signal


def serve(options: dict[str, Any], on_ready: Callable[[str], None]) -> dict:
    """Serve until SIGINT or SIGTERM; `options` are `EmulatorConfig.from_options`'s. Returns the emulator's stats."""
    try:
        config = EmulatorConfig.from_options(**options)
    except ValueError as exc:
        raise BatchpilotError(str(exc), "see `batchpilot emulate --help` and references/emulator.md") from None
    try:
        emulator = Emulator(config)
    except OSError as exc:
        raise BatchpilotError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
                              "pick another --port, or --port 0 for a free one") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emulator.start()
    on_ready(emulator.base_url)
    while not stop.wait(POLL_SECONDS):
        pass
    stats = emulator.stats()
    emulator.stop()
    return stats
