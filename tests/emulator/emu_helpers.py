"""Helpers shared by the emulator tests: request bodies, a raw HTTP client, admin calls."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlparse

from batchpilot.emulator.http.server import Emulator

HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01", "content-type": "application/json"}
MODEL = "claude-haiku-4-5"


def params(text: str = "Hello", **extra: Any) -> dict:
    return {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **extra}


def assert_no_internal_errors(emu: Emulator) -> None:
    stats = emu.stats()
    assert stats["internal_errors"] == 0, stats["last_internal_error"]


class Raw:
    """A tiny HTTP client for wire tests: exact bytes, headers and statuses, no SDK in between."""

    def __init__(self, base_url: str):
        parsed = urlparse(base_url)
        self.host, self.port = parsed.hostname, parsed.port

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None,
             raw: bytes | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, data, HEADERS if headers is None else headers)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, dict, Any]:
        status, headers, payload = self.call(method, path, body, **kw)
        return status, headers, json.loads(payload) if payload else None


def raw(emu: Emulator) -> Raw:
    return Raw(emu.base_url)


def admin(emu: Emulator, action: str, body: Any = None) -> Any:
    status, _, data = raw(emu).json("POST", f"/_emulator/{action}", body if body is not None else {})
    assert status == 200, data
    return data
