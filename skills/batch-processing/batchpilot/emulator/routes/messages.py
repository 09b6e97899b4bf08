"""POST /v1/messages (JSON or SSE) and POST /v1/messages/count_tokens.

A Messages request goes through, in order: JSON parsing and validation (400/404), the rate-limit buckets
(429 + retry-after), HTTP faults (529/500/429/400), latency and the `slow` fault, the scenario (a scripted
reply or error), then the responder (with answer faults), prompt-cache accounting, and usage bookkeeping.
count_tokens answers the emulator's own tokenizer (`behaviour.tokenizer.input_tokens`) exactly, plus the
emulator's own count of documents and images (`behaviour.media`), and never touches the cache, like the real
one. A `file_id` source needs the Files API beta header and an uploaded file.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from batchpilot.emulator.behaviour.faults import ANSWER_FAULTS, HTTP_FAULTS
from batchpilot.emulator.behaviour.message_build import build_message, sse_body
from batchpilot.emulator.state.rate_limits import retry_after
from batchpilot.emulator.behaviour.responder import answer, make_id, request_key
from batchpilot.emulator.behaviour.scenario import last_user_text
from batchpilot.emulator.behaviour.media import check_media, media_tokens, references_files
from batchpilot.emulator.behaviour.request_checks import check_params
from batchpilot.emulator.routes.files import FILES_BETA, has_files_beta
from batchpilot.emulator.http.wire import ApiError, Request, Response, bad_request
from batchpilot.emulator.behaviour.tokenizer import input_tokens

if TYPE_CHECKING:
    from batchpilot.emulator.app import App


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise bad_request("The request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None


def _params(app: "App", request: Request, counting: bool) -> dict:
    params = parse_json(request.body)
    problem = check_params(params, in_batch=False, allow_unknown_models=app.config.allow_unknown_models,
                           version=request.headers.get("anthropic-version"), counting=counting)
    message = problem.message if problem is not None else check_media(params, app.files.content)
    if message is None and references_files(params) and not has_files_beta(request):
        message = f"file_id sources need the Files API beta: send the header anthropic-beta: {FILES_BETA}"
    if message is not None:
        error = ApiError(problem.status if problem else 400, problem.type if problem else "invalid_request_error", message)
        if isinstance(params, dict) and not counting:
            error.request_key = request_key(params, app.config.seed)
        raise error
    return params


def count_tokens(app: "App", request: Request) -> Response:
    params = _params(app, request, counting=True)
    return Response.json({"input_tokens": input_tokens(params) + media_tokens(params, app.files.content)})


def _fault_key(app: "App", key: str) -> str:
    if not app.config.faults:
        return key
    with app.seen_lock:
        n = app.seen.get(key, 0)
        app.seen[key] = n + 1
    return f"{key}/{n}"


def create(app: "App", request: Request) -> Response:
    params = _params(app, request, counting=False)
    key = request_key(params, app.config.seed)
    try:
        response = _create(app, params, key)
    except ApiError as exc:
        exc.request_key = key  # the log names the request whatever the answer
        raise
    response.request_key = key
    return response


def _create(app: "App", params: dict, key: str) -> Response:
    attached = media_tokens(params, app.files.content)
    total = input_tokens(params) + attached
    wait = app.limiter.admit_message(total)
    if wait > 0:
        raise ApiError(429, "rate_limit_error",
                       "This request would exceed the rate limit for your organization (emulated). "
                       "Please wait before trying again.", [("retry-after", retry_after(wait))])
    fault_key = _fault_key(app, key)
    subject = last_user_text(params) if app.config.faults else ""
    delay = app.config.latency
    if app.faults.first(("slow",), fault_key, subject):
        delay += app.config.slow_seconds
    if delay > 0:
        time.sleep(delay)
    rule = app.faults.first(tuple(HTTP_FAULTS), fault_key, subject)
    if rule is not None:
        status, type_, message = HTTP_FAULTS[rule.kind]
        headers = [("retry-after", "1")] if status == 429 else []
        raise ApiError(status, type_, message, headers, fault=rule.kind)
    step, scripted = app.scenario.pick(params)
    if scripted is not None and scripted.get("error"):
        error = scripted["error"]
        failure = ApiError(int(error["status"]), str(error.get("type") or "api_error"),
                           str(error.get("message") or "Scripted error"), fault="scenario")
        failure.scenario_step = step
        raise failure
    answer_rule = app.faults.first(ANSWER_FAULTS, fault_key, subject)
    fault = answer_rule.kind if answer_rule else None
    reply = answer(params, key, fault, scripted)
    cache = app.cache.apply(params, app.clock.now())
    cache.input_tokens += attached  # documents and images sit after the cached prefix: plain input
    message = build_message(make_id("msg", f"{fault_key}/{time.monotonic_ns()}"), params["model"], reply, cache, "standard")
    usage = message["usage"]
    app.limiter.record_output(usage["output_tokens"], refund_input=cache.cache_read)
    app.stats.add_usage(usage)
    log_usage = {k: usage[k] for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                      "cache_creation_input_tokens")}
    if app.faults.first(("drop_answer",), fault_key, subject):
        # Made and billed, then lost on the way back: the client cannot tell it from a request never sent.
        return Response(200, b"", usage=log_usage, fault="drop_answer", drop=True)
    if params.get("stream"):
        return Response(200, sse_body(message), "text/event-stream; charset=utf-8",
                        [("cache-control", "no-cache")], usage=log_usage, fault=fault, scenario_step=step)
    return Response.json(message, usage=log_usage, fault=fault, scenario_step=step)
