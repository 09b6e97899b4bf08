"""The admin endpoints under /_emulator/ (outside /v1, no auth): observe and steer the emulator from tests.

    GET  /_emulator/stats                      counters: requests by route and status, internal errors, 429s,
                                               tokens, faults fired, batches, the emulated time
    POST /_emulator/advance      {"seconds": N} move the emulated clock forward
    POST /_emulator/batches/ID/finish          end the batch now, every request finished
    POST /_emulator/batches/ID/expire          end it now, unfinished requests expired
    POST /_emulator/batches/ID/archive         archive it now (results no longer downloadable)
    POST /_emulator/limits       {"requests_per_minute": N, "input_tokens_per_minute": N,
                                  "output_tokens_per_minute": N}   change the Messages limits now (any subset)
    POST /_emulator/reset                      forget batches, cache, limits, counters; restart the clock
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from batchpilot.emulator.state.clock import iso
from batchpilot.emulator.http.wire import ApiError, Request, Response, bad_request, not_found

MAX_ADVANCE = 100 * 365 * 86_400.0

if TYPE_CHECKING:
    from batchpilot.emulator.app import App


def stats(app: "App") -> dict:
    s = app.stats
    with s._lock:
        counters = {
            "requests": s.requests,
            "by_status": dict(s.by_status),
            "by_route": dict(s.by_route),
            "internal_errors": s.internal_errors,
            "last_internal_error": s.last_internal_error,
            "rate_limited": s.rate_limited,
            "messages": s.messages,
            "tokens": dict(s.tokens),
        }
    faults = dict(app.faults.fired)
    for kind, n in app.store.line_faults.items():
        faults[f"line:{kind}"] = n
    batches = app.store.listing()
    counters.update({
        "faults": faults,
        "batches": {"total": len(batches), "ended": sum(1 for b in batches if b.ended_at is not None)},
        "now": iso(app.clock.now()),
    })
    return counters


def handle(app: "App", request: Request) -> Response:
    parts = request.path.strip("/").split("/")[1:]
    if request.method == "GET" and parts == ["stats"]:
        return Response.json(stats(app))
    if request.method != "POST":
        raise ApiError(405, "invalid_request_error", f"{request.method} {request.path}: admin actions are POSTs")
    if parts == ["advance"]:
        try:
            seconds = float(json.loads(request.body or b"{}").get("seconds", 0))
        except (ValueError, AttributeError, TypeError):
            raise bad_request('advance: send {"seconds": <number>}') from None
        if not 0 <= seconds <= MAX_ADVANCE:  # also rejects NaN and infinity: the clock must stay a real date
            raise bad_request(f"advance: seconds must be between 0 and {MAX_ADVANCE:.0f} (100 years)")
        return Response.json({"now": iso(app.clock.advance(seconds))})
    if parts == ["limits"]:
        return Response.json(app.limiter.set_limits(**_limits(request.body)))
    if parts == ["reset"]:
        app.reset()
        return Response.json({"reset": True})
    if len(parts) == 3 and parts[0] == "batches" and parts[2] in ("finish", "expire", "archive"):
        batch = app.store.get(parts[1])
        if batch is None:
            raise not_found(f"message_batch {parts[1]!r} was not found")
        if parts[2] == "archive":
            with batch.lock:
                app.store.archive(batch)
        else:
            app.store.finish(batch, parts[2])
        return Response.json(app.store.to_json(batch, request.base_url))
    raise ApiError(404, "not_found_error", f"Not found: {request.method} {request.path}")


LIMIT_KEYS = {"requests_per_minute": "rpm", "input_tokens_per_minute": "itpm", "output_tokens_per_minute": "otpm"}


def _limits(body: bytes | None) -> dict:
    """The new limits of a POST /_emulator/limits body, as RateLimiter.set_limits arguments (400 if malformed)."""
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        value = None
    if not isinstance(value, dict) or set(value) - set(LIMIT_KEYS):
        raise bad_request(f"limits: send a JSON object with any of {sorted(LIMIT_KEYS)}")
    out = {}
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise bad_request(f"limits: {key} must be a whole number >= 1, not {number!r}")
        out[LIMIT_KEYS[key]] = number
    return out
