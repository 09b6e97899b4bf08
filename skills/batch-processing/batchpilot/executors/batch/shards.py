"""Sharding a requests file into Message Batches, and streaming each batch's body straight from the file.

A shard is a byte range `[start, end)` of a JSONL file of request lines (`requests.jsonl`, or a retry round's
`rounds/round-N.jsonl`). Its create body is exactly

    {"requests":[` + the range's lines, newline replaced by `,`, without the last newline + `]}

so its size is known without serialising anything: 15 bytes + the range length - 1. `plan_shards` cuts the
file so that every shard has at most `max_requests` lines and its body at most `max_bytes` bytes (the API's
100,000 requests and 256 MB, less a 5% headroom for the real limit's fuzz); `ShardBody` is a seekable
file-like object over that body, so httpx sends it with a Content-Length and never holds more than one
64 KB read in memory. The body's SHA-256 is computed in the same pass: the submit intent carries it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from batchpilot.core.errors import BatchpilotError
from batchpilot.rundir.records import custom_id_of

MAX_REQUESTS_PER_BATCH = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
HEADROOM = 0.95  # the real limit is enforced in front of the API; never aim at its last byte
# One request in a batch is a Messages request, and a Messages request is at most 32 MB
# (https://platform.claude.com/docs/en/api/overview#request-size-limits; the PDF page repeats it): one over it
# is refused here, before any batch is created, rather than errored (or the whole create refused) by the API.
MAX_REQUEST_BYTES = 32 * 1000 * 1000
MAX_REQUESTS_ENV = "BATCHPILOT_MAX_BATCH_REQUESTS"
MAX_BYTES_ENV = "BATCHPILOT_MAX_BATCH_BYTES"

PREFIX = b'{"requests":['
SUFFIX = b"]}"
ID_SCAN_BLOCK = 8 << 20  # bytes per regex scan in iter_shard_ids


@dataclass
class Shard:
    """One batch-to-be: a byte range of the round's request file, its line count, body size and hash."""

    shard: int
    start: int
    end: int
    requests: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return asdict(self)


def limits(max_requests: int | None = None, max_bytes: int | None = None) -> tuple[int, int]:
    """(requests, body bytes) per batch: flag > environment > the API's limits; bytes with headroom."""
    def pick(flag: int | None, env: str, default: int) -> int:
        if flag is not None:
            return flag
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BatchpilotError(f"{env}={raw!r} is not a whole number", f"unset {env} or give a positive integer") from None
        if value < 1:
            raise BatchpilotError(f"{env}={raw!r} must be positive", f"unset {env} or give a positive integer")
        return value

    n = min(pick(max_requests, MAX_REQUESTS_ENV, MAX_REQUESTS_PER_BATCH), MAX_REQUESTS_PER_BATCH)
    b = min(pick(max_bytes, MAX_BYTES_ENV, MAX_BATCH_BYTES), MAX_BATCH_BYTES)
    return n, int(b * HEADROOM)


def plan_shards(path: Path, max_requests: int, max_bytes: int) -> list[Shard]:
    """Cut `path` into shards within both limits, in one streaming pass."""
    shards: list[Shard] = []
    fixed = len(PREFIX) + len(SUFFIX)
    start = offset = 0
    count = 0
    size = fixed  # body bytes of the open shard so far
    digest = hashlib.sha256(PREFIX)

    def close() -> None:
        digest.update(SUFFIX)
        shards.append(Shard(len(shards) + 1, start, offset, count, size, digest.hexdigest()))

    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                raise BatchpilotError(f"{path.name} line {number}: incomplete last line",
                                      "the request file was damaged; prepare the run again")
            body = line[:-1]
            if not body.strip():
                raise BatchpilotError(f"{path.name} line {number}: blank line", "remove blank lines from the request file")
            if len(body) > MAX_REQUEST_BYTES:
                raise BatchpilotError(
                    f"{path.name} line {number} ({custom_id_of(body)}): one request of {len(body)} bytes exceeds the "
                    f"API's 32 MB request limit; nothing was sent",
                    "shrink or split that item's document or image, or prepare the run with --upload files")
            if fixed + len(body) > max_bytes:
                raise BatchpilotError(
                    f"{path.name} line {number} ({custom_id_of(body)}): one request of {len(body)} bytes exceeds the "
                    f"batch body limit of {max_bytes} bytes",
                    "shorten that item (see --max-item-bytes) or raise the limit")
            if count and (count >= max_requests or size + 1 + len(body) > max_bytes):
                close()
                start, count, size, digest = offset, 0, fixed, hashlib.sha256(PREFIX)
            if count:
                digest.update(b",")
                size += 1
            digest.update(body)
            size += len(body)
            count += 1
            offset += len(line)
    if count:
        close()
    return shards


class ShardBody(io.RawIOBase):
    """The create body of one shard, read lazily from the request file (seekable, so httpx knows its length)."""

    def __init__(self, path: Path, shard: Shard):
        self._fh = open(path, "rb")
        self._start = shard.start
        self._middle = shard.end - shard.start - 1  # every line's newline becomes a comma, but the last one goes
        self._length = len(PREFIX) + self._middle + len(SUFFIX)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def __len__(self) -> int:
        return self._length

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            size = self._length - self._pos
        out = bytearray()
        while size > 0 and self._pos < self._length:
            pos = self._pos
            if pos < len(PREFIX):
                piece = PREFIX[pos:pos + size]
            elif pos < len(PREFIX) + self._middle:
                rel = pos - len(PREFIX)
                n = min(size, self._middle - rel, 1 << 20)
                self._fh.seek(self._start + rel)
                piece = self._fh.read(n).replace(b"\n", b",")
                if not piece:
                    raise BatchpilotError("the request file shrank while it was being sent", "prepare the run again")
            else:
                rel = pos - len(PREFIX) - self._middle
                piece = SUFFIX[rel:rel + size]
            out += piece
            self._pos += len(piece)
            size -= len(piece)
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        while True:
            chunk = self.read(1 << 16)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def edge_ids(path: Path, shard: Shard) -> tuple[str, str]:
    """The first and last custom_id of a shard (what a submit intent names), reading only those two lines."""
    with open(path, "rb") as fh:
        fh.seek(shard.start)
        first = fh.readline(max(1, shard.end - shard.start))
        # The last line ends at shard.end - 1 (its newline): find the newline before it, block by block backwards.
        stop, pos = shard.end - 1, shard.end - 1
        while pos > shard.start:
            step = min(64 << 10, pos - shard.start)
            fh.seek(pos - step)
            block = fh.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                pos = pos - step + cut + 1
                break
            pos -= step
        fh.seek(pos)
        last = fh.read(stop - pos)
    return custom_id_of(first.rstrip(b"\n")), custom_id_of(last)


def iter_shard_ids(path: Path, shard: Shard) -> Iterator[str]:
    """The custom_ids of a shard's requests, streamed from the file."""
    for ids in _id_blocks(path, shard):
        yield from (i.decode("ascii") for i in ids)


def shard_id_set(path: Path, shard: Shard) -> set[bytes]:
    """The custom_ids of a shard's requests as a set of bytes (what fetch checks results against)."""
    out: set[bytes] = set()
    for ids in _id_blocks(path, shard):
        out.update(ids)
    return out


def _id_blocks(path: Path, shard: Shard) -> Iterator[list[bytes]]:
    """Lists of custom_ids (bytes), one per block of the shard's byte range.

    Reads 8 MB blocks and finds `\\n{"custom_id":"` with one regex per block — a literal-prefix search in C
    (every line starts a record: JSON escapes newlines). A block holding a line of another shape is read
    line by line instead.
    """
    block = ID_SCAN_BLOCK
    with open(path, "rb") as fh:
        fh.seek(shard.start)
        left = shard.end - shard.start
        carry = b""
        while left > 0 or carry:
            data = fh.read(min(block, left)) if left > 0 else b""
            left -= len(data)
            data = carry + data
            if not data:
                break
            cut = data.rfind(b"\n") + 1 if left > 0 else len(data)
            chunk, carry = data[:cut], data[cut:]
            ids = _LINE_IDS.findall(b"\n" + chunk)
            if len(ids) != chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1):
                ids = [custom_id_of(line).encode() for line in chunk.splitlines() if line.strip()]
            yield ids


_LINE_IDS = re.compile(rb'\n\{"custom_id":"([A-Za-z0-9_-]{1,64})"')
