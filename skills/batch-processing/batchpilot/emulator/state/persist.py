"""Emulator persistence: batches and the emulated clock survive a restart, so separate processes can share them.

`batchpilot submit RUN --emulate` and a later `batchpilot status RUN --emulate` each start their own
in-process emulator. With `EmulatorConfig(data_dir=<run>/emulator, persist=True)` both see the same
account: the batch store's metadata is written to `<data_dir>/state.json` (atomically) after every change
(create, cancel, finish, archive, delete), the request spools already live in `data_dir`, and on start the
store and the clock are restored — the clock continues as if the emulator had kept running, so a batch
that would have ended while no process was up has ended.

`attach(app)` is the whole hook: it restores, then wraps the store's mutating methods to save afterwards.
Derived state (request counts, the end of a batch that finished naturally) is recomputed from the clock.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchpilot.emulator.state.batch_store import Batch

if TYPE_CHECKING:
    from batchpilot.emulator.app import App

STATE_FILE = "state.json"
MUTATORS = ("add", "cancel", "finish", "archive", "delete")
FIELDS = ("id", "size", "created", "expires", "cancel_at", "ended_at", "archived_at", "finished", "rest")


def attach(app: "App") -> None:
    """Restore `app`'s batches and clock from its data dir, and save them after every change."""
    path = Path(app.spool_dir) / STATE_FILE
    lock = threading.Lock()
    restore(app, path)

    def wrap(name: str) -> None:
        original = getattr(app.store, name)

        def saving(*args: Any, **kwargs: Any) -> Any:
            value = original(*args, **kwargs)
            with lock:
                save(app, path)
            return value

        setattr(app.store, name, saving)

    for name in MUTATORS:
        wrap(name)


def save(app: "App", path: Path) -> None:
    store = app.store
    batches = []
    for batch in list(store.batches.values()):
        entry = {k: getattr(batch, k) for k in FIELDS}
        entry["spool"] = batch.spool.name
        batches.append(entry)
    state = {"serial": store.serial, "clock": {"emulated": app.clock.now(), "wall": time.time()}, "batches": batches}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def restore(app: "App", path: Path) -> None:
    if not path.exists():
        return
    state = json.loads(path.read_text(encoding="utf-8"))
    clock = state.get("clock") or {}
    if clock:
        # Continue the emulated clock as if it had run all along (at the configured scale).
        target = clock["emulated"] + (time.time() - clock["wall"]) * app.clock.scale
        app.clock.advance(target - app.clock.now())
    store = app.store
    store.serial = max(store.serial, int(state.get("serial", 0)))
    long_ago = time.monotonic() - 1e6  # restored batches are past any "404 just after create" window
    for entry in state.get("batches", []):
        batch = Batch(entry["id"], entry["size"], entry["created"], entry["expires"], store.dir / entry["spool"], long_ago)
        batch.cancel_at, batch.archived_at = entry.get("cancel_at"), entry.get("archived_at")
        if entry.get("ended_at") is not None and entry.get("finished") is not None:
            store._end(batch, entry["finished"], entry.get("rest") or "expired", entry["ended_at"])
        store.batches[batch.id] = batch
