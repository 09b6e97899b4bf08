"""The emulator's state and router: every HTTP request enters `App.handle` and leaves as a `Response`.

Routing is on the path only (a `?beta=true` query is ignored) and tolerates a path prefix before `/v1/`
(the Claude Code CLI keeps any prefix of ANTHROPIC_BASE_URL). `/v1/*` needs an API key (`x-api-key` or
`Authorization: Bearer`, any value) and an `anthropic-version` header (any value); `HEAD` of any path and
the admin paths under `/_emulator/` need neither. Anything unexpected raised inside an endpoint becomes a
500 `api_error` body and is counted in the stats as an internal error — tests assert that count is zero.
"""

from __future__ import annotations

import tempfile
from email.utils import formatdate
import threading
import traceback
from pathlib import Path

from batchpilot.emulator.routes import admin, batches as batch_routes, files as file_routes, messages as message_routes
from batchpilot.emulator.state.batch_store import BatchStore, remove_spool_dir
from batchpilot.emulator.state.persist import attach
from batchpilot.emulator.state.cache import PromptCache
from batchpilot.emulator.state.clock import Clock, iso
from batchpilot.emulator.state.files_store import FilesStore
from batchpilot.emulator.config import EmulatorConfig
from batchpilot.emulator.behaviour.faults import FaultPlan
from batchpilot.emulator.state.request_log import RequestLog
from batchpilot.emulator.state.rate_limits import RateLimiter
from batchpilot.emulator.behaviour.scenario import Scenario
from batchpilot.emulator.http.wire import ApiError, Request, Response, error_body

BATCH_PREFIX = "/v1/messages/batches"
FILES_PREFIX = "/v1/files"


class Stats:
    """Counters for the admin stats endpoint; one lock, cheap increments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.by_route: dict[str, int] = {}
        self.internal_errors = 0
        self.last_internal_error: str | None = None
        self.rate_limited = 0
        self.messages = 0
        self.tokens = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1
            self.by_route[route] = self.by_route.get(route, 0) + 1
            if status == 429:
                self.rate_limited += 1

    def add_usage(self, usage: dict) -> None:
        with self._lock:
            self.messages += 1
            self.tokens["input"] += usage["input_tokens"]
            self.tokens["output"] += usage["output_tokens"]
            self.tokens["cache_read"] += usage["cache_read_input_tokens"]
            self.tokens["cache_write"] += usage["cache_creation_input_tokens"]

    def internal(self, text: str) -> None:
        with self._lock:
            self.internal_errors += 1
            self.last_internal_error = text


class App:
    """Everything one emulator holds: config, clock, batches, cache, limits, faults, scenario, log, stats."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.clock = Clock(config.time_scale)
        self.faults = FaultPlan(config.faults, config.seed)
        self.scenario = Scenario(config.scenario)
        self.cache = PromptCache()
        self.limiter = RateLimiter(config.requests_per_minute, config.input_tokens_per_minute,
                                   config.output_tokens_per_minute, config.batch_requests_per_minute)
        self._own_dir = config.data_dir is None
        self.spool_dir = Path(config.data_dir) if config.data_dir else Path(tempfile.mkdtemp(prefix="batchpilot-emulator-"))
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.store = BatchStore(config, self.faults, self.clock.now, self.spool_dir)
        self.files = FilesStore(self.spool_dir if config.persist and config.data_dir else None,
                                lambda: iso(self.clock.now()))
        self.store.files = self.files.content  # batch lines resolve file_id sources through the Files API
        if config.persist and config.data_dir:  # separate CLI processes share one emulated account
            attach(self)
        self.log = RequestLog(config.log_path)
        self.stats = Stats()
        self.seen: dict[str, int] = {}  # request key -> times seen, so a retried request draws its faults anew
        self.seen_lock = threading.Lock()

    def close(self) -> None:
        self.log.close()
        if self._own_dir:
            remove_spool_dir(self.spool_dir)

    def reset(self) -> None:
        """Forget batches, cache, buckets, counters and used scenario steps; restart the clock."""
        for batch in self.store.listing():
            self.store.delete(batch)
        self.store.serial = 0
        self.store.line_faults.clear()
        self.cache.reset()
        self.limiter.reset()
        self.faults.reset()
        self.scenario.reset()
        self.stats.reset()
        self.clock.reset()
        with self.seen_lock:
            self.seen.clear()

    def route(self, request: Request) -> tuple[str, object]:
        """(route name, handler) for this method and path; raises 404/405 for what is not served."""
        path = request.path
        if request.method == "HEAD":
            return "head", lambda app, req: Response(200, b"", "text/plain")
        if path.startswith("/_emulator/"):
            return "admin", admin.handle
        at = path.find("/v1/")
        if at < 0:
            raise ApiError(404, "not_found_error", f"Not found: {request.method} {path}")
        path = path[at:].rstrip("/") or path
        request.path = path
        table = {
            "/v1/messages": {"POST": ("messages", message_routes.create)},
            "/v1/messages/count_tokens": {"POST": ("count_tokens", message_routes.count_tokens)},
            BATCH_PREFIX: {"POST": ("batch_create", batch_routes.create), "GET": ("batch_list", batch_routes.listing)},
            FILES_PREFIX: {"POST": ("file_upload", file_routes.upload), "GET": ("file_list", file_routes.listing)},
        }
        methods = table.get(path)
        if methods is None and path.startswith(FILES_PREFIX + "/") and path.count("/") == 3:
            methods = {"GET": ("file_retrieve", file_routes.retrieve), "DELETE": ("file_delete", file_routes.delete)}
        if methods is None and path.startswith(BATCH_PREFIX + "/"):
            rest = path[len(BATCH_PREFIX) + 1:].split("/")
            if len(rest) == 1:
                methods = {"GET": ("batch_retrieve", batch_routes.retrieve), "DELETE": ("batch_delete", batch_routes.delete)}
            elif len(rest) == 2 and rest[1] == "cancel":
                methods = {"POST": ("batch_cancel", batch_routes.cancel)}
            elif len(rest) == 2 and rest[1] == "results":
                methods = {"GET": ("batch_results", batch_routes.results)}
        if methods is None:
            raise ApiError(404, "not_found_error", f"Not found: {request.method} {path}")
        if request.method not in methods:
            raise ApiError(405, "invalid_request_error",
                           f"Method {request.method} is not allowed on {path}; use {', '.join(methods)}")
        return methods[request.method]

    def handle(self, request: Request, request_id: str) -> Response:
        name = "unrouted"
        try:
            name, handler = self.route(request)
            if name not in ("admin", "head"):
                self.check_headers(request)
            response = handler(self, request)
        except ApiError as exc:
            response = Response(exc.status, b"", headers=list(exc.headers), fault=exc.fault,
                                request_key=exc.request_key, scenario_step=exc.scenario_step)
            response.body = _error(exc, request_id)
        except Exception:  # a bug in the emulator: still an API-shaped answer, but counted and kept for tests
            self.stats.internal(traceback.format_exc(limit=8))
            response = Response(500, _error(ApiError(500, "api_error", "Internal server error (emulator bug)"), request_id))
        if name in ("messages", "count_tokens"):
            response.headers += self.limiter.message_headers()
        # The server's time, as every HTTP server sends it; on the emulated clock, so a client that measures a
        # wait in server time (fetch's results-404 window) follows the emulator's time_scale.
        response.headers.append(("date", formatdate(self.clock.now(), usegmt=True)))
        self.stats.count(name, response.status)
        return response

    def check_headers(self, request: Request) -> None:
        headers = request.headers
        auth = headers.get("authorization") or ""
        if not headers.get("x-api-key") and not auth.lower().startswith("bearer "):
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        if not headers.get("anthropic-version"):
            raise ApiError(400, "invalid_request_error", "anthropic-version: header is required")

    def body_limit(self, method: str, path: str) -> int:
        """The largest body this request may carry (413 above it)."""
        if method == "POST" and path.rstrip("/").endswith(BATCH_PREFIX):
            return self.config.max_batch_body_bytes
        if method == "POST" and path.rstrip("/").endswith(FILES_PREFIX):
            return file_routes.MAX_FILE_BYTES
        return self.config.max_messages_body_bytes


def _error(exc: ApiError, request_id: str) -> bytes:
    return error_body(exc.status, exc.type, exc.message, request_id)
