"""The plain data that passes between the HTTP server and the endpoint code: request, response, API error.

Endpoints never touch sockets: they take a `Request` and return a `Response` (a JSON value, bytes, or an
iterator of byte chunks to stream) or raise `ApiError`, which becomes the API's error body:
`{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator


class ApiError(Exception):
    """An API-shaped failure: HTTP status, error type, message, and extra headers (e.g. retry-after)."""

    def __init__(self, status: int, type_: str, message: str, headers: list[tuple[str, str]] | None = None,
                 fault: str | None = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers or []
        self.fault = fault
        self.request_key: str | None = None  # set once the request's body is known (see Response.request_key)
        self.scenario_step: int | None = None


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def not_found(message: str = "The requested resource could not be found.") -> ApiError:
    return ApiError(404, "not_found_error", message)


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: Any  # case-insensitive mapping (email.message.Message)
    body: bytes
    base_url: str  # scheme://Host[/prefix], for URLs the response hands out


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterator[bytes] = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # What the request log records beside method, path and status.
    batch_id: str | None = None
    requests: int | None = None
    usage: dict | None = None
    fault: str | None = None
    request_key: str | None = None  # POST /v1/messages only: the responder's digest of the request body
    scenario_step: int | None = None  # POST /v1/messages only: the index of the scripted step that answered
    drop: bool = False  # close the connection without a response (the `drop_answer` fault: billed, never seen)

    @classmethod
    def json(cls, value: Any, status: int = 200, **log: Any) -> "Response":
        return cls(status, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), **log)


def error_body(status: int, type_: str, message: str, request_id: str | None) -> bytes:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
