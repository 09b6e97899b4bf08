"""The HTTP side: a threaded standard-library server speaking HTTP/1.1 with keep-alive, and `Emulator`,
which runs it in-process on a background thread (or in the foreground for `batchpilot emulate`).

Each response is written with one `sendall` of status line, headers and body (JSON and SSE bodies carry a
Content-Length); streamed bodies (batch results) use chunked transfer encoding, so memory does not grow
with the file. Every response carries a `request-id`. A `drop_results` fault cuts the connection before
the terminating chunk, so clients see an incomplete body rather than a short but valid file.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from batchpilot.emulator.app import App
from batchpilot.emulator.routes.admin import stats
from batchpilot.emulator.state.batch_store import DropConnection
from batchpilot.emulator.config import EmulatorConfig
from batchpilot.emulator.behaviour.responder import make_id
from batchpilot.emulator.http.wire import Request, Response, error_body

DRAIN_LIMIT = 1 << 30  # read and discard oversized bodies up to this, so the client sees the 413
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
           413: "Request Entity Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable", 504: "Gateway Timeout", 529: "Overloaded"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batchpilot-emulator"
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr chatter
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _read_body(self, limit: int) -> bytes | None:
        """The body, or None when it is larger than `limit` (then it has been drained or the connection closed)."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            parts, size = [], 0
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += length
                chunk = self.rfile.read(length)
                self.rfile.readline()
                if size <= limit:
                    parts.append(chunk)
            return b"".join(parts) if size <= limit else None
        length = int(self.headers.get("content-length") or 0)
        if length <= limit:
            return self.rfile.read(length) if length > 0 else b""
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return None
        left = length
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return None

    def _serve(self, method: str) -> None:
        app = self.server.app
        started = time.perf_counter()
        request_id = make_id("req", f"{app.config.seed}/{next(self.server.serial)}")
        path, _, query = self.path.partition("?")
        host = self.headers.get("host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        prefix = path[: path.find("/v1/")] if "/v1/" in path else ""
        request = Request(method, path, dict(parse_qsl(query)), self.headers, b"", f"http://{host}{prefix}")
        try:
            body = self._read_body(app.body_limit(method, path))
        except (ValueError, OSError):
            self.close_connection = True
            body = b""
        if body is None:
            limit = app.body_limit(method, path)
            response = Response(413, error_body(413, "request_too_large",
                                                f"Request exceeds the maximum allowed number of bytes ({limit})", request_id))
            app.stats.count("too_large", 413)
        else:
            request.body = body
            response = app.handle(request, request_id)
        # Log before sending a plain body, so a client that reads the log right after its answer finds the line;
        # a streamed body is logged once sent, when we know whether it was cut.
        streamed = not isinstance(response.body, (bytes, bytearray))
        if not streamed:
            self._log(method, request, response, started)
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self._write(method, response, request_id)
        except DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            response.fault = "drop_results"
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if streamed:
            self._log(method, request, response, started)

    def _log(self, method: str, request: Request, response: Response, started: float) -> None:
        # request_key (and scenario_step) only on Messages lines: batch and other lines keep their shape.
        keyed = {"request_key": response.request_key} if response.request_key else {}
        if response.scenario_step is not None:
            keyed["scenario_step"] = response.scenario_step
        if response.content_type.startswith("text/event-stream"):
            keyed["stream"] = True  # answered as server-sent events
        self.server.app.log.write(method=method, path=request.path, status=response.status,
                                  batch_id=response.batch_id, requests=response.requests, usage=response.usage,
                                  fault=response.fault, **keyed, ms=round((time.perf_counter() - started) * 1000, 2))

    def _write(self, method: str, response: Response, request_id: str) -> None:
        reason = REASONS.get(response.status, "Error")
        head = [f"HTTP/1.1 {response.status} {reason}", f"request-id: {request_id}",
                f"content-type: {response.content_type}"]
        head += [f"{k}: {v}" for k, v in response.headers]
        if self.close_connection:
            head.append("connection: close")
        if isinstance(response.body, (bytes, bytearray)):
            body = b"" if method == "HEAD" else bytes(response.body)
            head.append(f"content-length: {len(response.body)}")
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            return
        head.append("transfer-encoding: chunked")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for chunk in response.body:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    app: App

    def __init__(self, address: tuple[str, int], app: App):
        self.app = app
        self.serial = itertools.count(1)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is not the emulator's fault; anything else is counted as a bug.
        import sys
        import traceback

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        self.app.stats.internal(traceback.format_exc(limit=8))


class Emulator:
    """The local Anthropic API emulator. `with Emulator(EmulatorConfig(...)) as emu:` serves on a background
    thread at `emu.base_url` until the block ends."""

    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self.app = App(self.config)
        self.server = _Server((self.config.host, self.config.port), self.app)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Emulator":
        """Serve on a daemon thread; returns at once (the socket already accepts connections)."""
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="batchpilot-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` (from a signal handler or another thread)."""
        self.server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.app.close()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # Admin conveniences for in-process users (the same as the /_emulator/ endpoints).
    def stats(self) -> dict:
        return stats(self.app)

    def advance(self, seconds: float) -> None:
        self.app.clock.advance(seconds)

    def reset(self) -> None:
        self.app.reset()

    def __repr__(self) -> str:
        return f"Emulator({self.base_url})"

