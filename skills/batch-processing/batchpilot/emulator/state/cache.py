"""Prompt-cache simulation: which input tokens of a request are cache writes, cache reads, or plain input.

The request is walked in the API's cache order (tools → system → messages) with the emulator's own
tokenizer (`behaviour.tokenizer.request_segments`).
A block with `cache_control` (or the request's last block when the top-level `cache_control` asks for
automatic caching) is a breakpoint; at most the last four count. A breakpoint whose prefix reaches the
model's minimum cacheable length is eligible:

* read: the longest eligible prefix already in the cache and still within its TTL is read (and its TTL
  refreshed, as a hit does for free);
* write: from there to the last eligible breakpoint is written, each stretch billed under the TTL of the
  breakpoint that closes it (the `ephemeral_5m` / `ephemeral_1h` breakdown);
* input_tokens: everything else, i.e. what follows the last breakpoint, plus the request overhead.

So input + cache_creation + cache_read always equals `tokenizer.input_tokens(params)`. Entries are
keyed by model and prefix content, expire on the emulated clock, and the table is bounded (oldest out).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from batchpilot.core.models import find_model
from batchpilot.emulator.behaviour.tokenizer import REQUEST_OVERHEAD, request_segments

MAX_BREAKPOINTS = 4
MAX_ENTRIES = 50_000
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
DEFAULT_MIN_CACHE_TOKENS = 1024  # for models batchpilot does not know


@dataclass
class CacheUsage:
    input_tokens: int
    cache_read: int = 0
    write_5m: int = 0
    write_1h: int = 0
    read_ttl: str = "5m"  # the TTL of the entry that was read

    def missed(self) -> "CacheUsage":
        """This usage had the read missed (a batch's best-effort cache): the prefix is written again instead."""
        if not self.cache_read:
            return self
        extra_5m, extra_1h = (0, self.cache_read) if self.read_ttl == "1h" else (self.cache_read, 0)
        return CacheUsage(self.input_tokens, 0, self.write_5m + extra_5m, self.write_1h + extra_1h, self.read_ttl)

    def as_usage(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.write_5m + self.write_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.write_5m, "ephemeral_1h_input_tokens": self.write_1h},
        }


class PromptCache:
    """A bounded table of cached prefixes: key -> expiry (emulated epoch seconds)."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def apply(self, params: dict, now: float) -> CacheUsage:
        """Account `params` against the cache at emulated time `now`, updating the cache."""
        model_id = params.get("model") if isinstance(params.get("model"), str) else ""
        model = find_model(model_id)
        minimum = model.min_cache_tokens if model else DEFAULT_MIN_CACHE_TOKENS
        segments = list(request_segments(params))
        total = REQUEST_OVERHEAD + sum(s.tokens for s in segments)
        auto_ttl = None
        top = params.get("cache_control")
        if isinstance(top, dict) and segments:
            auto_ttl = str(top.get("ttl") or "5m")
        hasher = hashlib.blake2b(model_id.encode(), digest_size=16)
        points: list[tuple[int, bytes, str]] = []  # (prefix tokens, key, ttl) per breakpoint
        running = 0
        for i, segment in enumerate(segments):
            hasher.update(b"\x1e" + segment.text.encode("utf-8", "replace"))
            running += segment.tokens
            ttl = segment.cache_ttl or (auto_ttl if i == len(segments) - 1 else None)
            if ttl:
                points.append((running, hasher.copy().digest(), ttl if ttl in TTL_SECONDS else "5m"))
        eligible = [p for p in points[-MAX_BREAKPOINTS:] if p[0] >= minimum]
        if not eligible:
            return CacheUsage(total)
        with self._lock:
            read_at = -1
            for index in range(len(eligible) - 1, -1, -1):
                expiry = self._entries.get(eligible[index][1])
                if expiry is not None and expiry > now:
                    read_at = index
                    break
            read = eligible[read_at][0] if read_at >= 0 else 0
            write_5m = write_1h = 0
            previous = read
            for tokens, key, ttl in eligible[read_at + 1:]:
                if ttl == "1h":
                    write_1h += tokens - previous
                else:
                    write_5m += tokens - previous
                previous = tokens
            for tokens, key, ttl in eligible[max(read_at, 0):]:
                self._entries[key] = max(self._entries.get(key, 0.0), now + TTL_SECONDS[ttl])
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return CacheUsage(total - eligible[-1][0], read, write_5m, write_1h,
                          eligible[read_at][2] if read_at >= 0 else "5m")
