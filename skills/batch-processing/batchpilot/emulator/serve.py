"""Serve the emulator as a program (what `batchpilot emulate` does): on loopback, until SIGINT or SIGTERM.

`serve` builds the `EmulatorConfig` from command-line style options, listens, reports the base URL through
`on_ready` once the socket accepts connections, and returns the request counts when a signal stops it.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from typing import Any, Callable

from batchpilot.core.errors import BatchpilotError
from batchpilot.emulator.config import EmulatorConfig
from batchpilot.emulator.http.server import Emulator

POLL_SECONDS = 0.5  # how often the main thread looks for the stop signal


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1): only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def serve(options: dict[str, Any], on_ready: Callable[[str], None]) -> dict:
    """Serve until SIGINT or SIGTERM; `options` are `EmulatorConfig.from_options`'s plus `allow_remote`, without
    which a non-loopback host is refused (the admin endpoints are unauthenticated). Returns the emulator's stats."""
    options = dict(options)
    allow_remote = bool(options.pop("allow_remote", False))
    try:
        config = EmulatorConfig.from_options(**options)
    except ValueError as exc:
        raise BatchpilotError(str(exc), "see `batchpilot emulate --help` and references/emulator.md") from None
    if not is_loopback(config.host):
        if not allow_remote:
            raise BatchpilotError(f"--host {config.host!r} is not a loopback address",
                                  "the emulator's admin endpoints have no authentication: keep the default "
                                  "127.0.0.1, or add --allow-remote if other machines must reach it")
        print(f"warning: serving on {config.host}: anyone who can reach it can drive the emulator's admin "
              "endpoints (no authentication)", file=sys.stderr, flush=True)
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
