"""The emulated Files API's storage: uploaded files, their metadata, and a log of every upload and delete.

Files live in memory, or with a data dir (`EmulatorConfig.data_dir`, the run's `emulator/` folder) as
`files/<id>` beside `files.jsonl`, an append-only log of `{"event": "uploaded" | "deleted", ...}` lines
that is replayed on start, so separate CLI processes see one account. The log is also what tests read to
prove each file was uploaded exactly once.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

LOG_FILE = "files.jsonl"


@dataclass
class StoredFile:
    id: str
    filename: str
    mime_type: str
    size_bytes: int
    created_at: str

    def to_json(self) -> dict:
        return {**asdict(self), "type": "file", "downloadable": False}


class FilesStore:
    """Uploads by id; thread-safe; persisted under `data_dir` when one is given."""

    def __init__(self, data_dir: Path | None, now_iso: Callable[[], str]):
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._data: dict[str, bytes] = {}
        self._dir = Path(data_dir) / "files" if data_dir else None
        self._log = Path(data_dir) / LOG_FILE if data_dir else None
        self._now = now_iso
        self.serial = 0
        if self._log is not None and self._log.exists():
            self._replay()

    def _replay(self) -> None:
        assert self._log is not None
        for line in self._log.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line: the upload it describes never answered
            self.serial += 1
            if event.get("event") == "uploaded":
                meta = StoredFile(**{k: event[k] for k in ("id", "filename", "mime_type", "size_bytes", "created_at")})
                self._files[meta.id] = meta
            elif event.get("event") == "deleted":
                self._files.pop(event.get("id"), None)

    def _append(self, event: dict) -> None:
        if self._log is None:
            return
        with open(self._log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def upload(self, filename: str, mime_type: str, data: bytes) -> StoredFile:
        with self._lock:
            self.serial += 1
            meta = StoredFile(f"file_{self.serial:06d}{os.urandom(6).hex()}", filename, mime_type, len(data), self._now())
            if self._dir is not None:
                self._dir.mkdir(parents=True, exist_ok=True)
                (self._dir / meta.id).write_bytes(data)
            else:
                self._data[meta.id] = data
            self._files[meta.id] = meta
            self._append({"event": "uploaded", **asdict(meta)})
            return meta

    def listing(self) -> list[StoredFile]:
        """Newest first, like the API."""
        with self._lock:
            return sorted(self._files.values(), key=lambda f: (f.created_at, f.id), reverse=True)

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def content(self, file_id: str) -> bytes | None:
        with self._lock:
            if file_id not in self._files:
                return None
            if self._dir is not None:
                path = self._dir / file_id
                return path.read_bytes() if path.exists() else None
            return self._data.get(file_id)

    def delete(self, file_id: str) -> bool:
        with self._lock:
            if self._files.pop(file_id, None) is None:
                return False
            self._data.pop(file_id, None)
            if self._dir is not None:
                (self._dir / file_id).unlink(missing_ok=True)
            self._append({"event": "deleted", "id": file_id})
            return True
