"""The /v1/messages/batches endpoints: create, list, retrieve, cancel, delete, results.

Create checks what the real API checks synchronously (JSON shape, 1..100,000 requests, custom_id pattern
and uniqueness, `params` an object; body size is checked before reading, as a 413) and the processing-queue
limit (429); everything inside `params` is checked later and comes back as `errored` lines. Every batch
endpoint draws on the batch request bucket (429 + retry-after when empty). Cancel on an ended batch and
delete or results before the end are 400s; results of an archived batch are a 404.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Iterator

from batchpilot.emulator.state.batch_store import spool_requests
from batchpilot.emulator.http.jsonstream import BodyError, iter_requests
from batchpilot.emulator.state.rate_limits import retry_after
from batchpilot.emulator.behaviour.request_checks import check_custom_id
from batchpilot.emulator.routes.files import FILES_BETA, has_files_beta
from batchpilot.emulator.http.wire import ApiError, Request, Response, bad_request, not_found

if TYPE_CHECKING:
    from batchpilot.emulator.app import App
    from batchpilot.emulator.state.batch_store import Batch

MAX_REQUESTS = 100_000
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 20


FILE_REF = re.compile(rb'"file_id"\s*:')  # a request with a Files API source
CREATE_FAULTS = ("foreign_batch", "create_overloaded")


def _throttle(app: "App") -> None:
    wait = app.limiter.admit_batch_call()
    if wait > 0:
        raise ApiError(429, "rate_limit_error", "Number of requests to the Message Batches API has exceeded the "
                       "rate limit (emulated). Please wait before trying again.", [("retry-after", retry_after(wait))])


def _checked(items: Iterator[Any]) -> Iterator[tuple[str, Any]]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if index >= MAX_REQUESTS:
            raise bad_request(f"requests: List should have at most {MAX_REQUESTS} items after validation")
        if not isinstance(item, dict):
            raise bad_request(f"requests.{index}: Input should be a valid dictionary")
        for key in ("custom_id", "params"):
            if key not in item:
                raise bad_request(f"requests.{index}.{key}: Field required")
        extra = set(item) - {"custom_id", "params"}
        if extra:
            raise bad_request(f"requests.{index}.{sorted(extra)[0]}: Extra inputs are not permitted")
        problem = check_custom_id(item["custom_id"], index)
        if problem:
            raise bad_request(problem)
        if item["custom_id"] in seen:
            raise bad_request(f"requests.{index}.custom_id: duplicate custom_id {item['custom_id']!r}; "
                              "each request in a batch needs a unique custom_id")
        seen.add(item["custom_id"])
        if not isinstance(item["params"], dict):
            raise bad_request(f"requests.{index}.params: Input should be a valid dictionary")
        yield item["custom_id"], item["params"]


def create(app: "App", request: Request) -> Response:
    _throttle(app)
    if FILE_REF.search(request.body) and not has_files_beta(request):
        raise bad_request(f"requests reference file_id sources: send the header anthropic-beta: {FILES_BETA}")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8 JSON") from None
    batch_id, spool = app.store.new_spool()
    try:
        count = spool_requests(spool, _checked(iter_requests(text)))
    except BodyError as exc:
        spool.unlink(missing_ok=True)
        raise bad_request(str(exc)) from None
    except ApiError:
        spool.unlink(missing_ok=True)
        raise
    if count == 0:
        spool.unlink(missing_ok=True)
        raise bad_request("requests: List should have at least 1 item after validation, not 0")
    fault = app.faults.first(CREATE_FAULTS, batch_id, batch_id)
    if fault is not None and fault.kind == "foreign_batch":
        # Another client of the workspace creates a batch of the same size first; ours is refused (529).
        spool.unlink(missing_ok=True)
        foreign_id, foreign_spool = app.store.new_spool()
        foreign = ((f"foreign-{cid}"[:64], params) for cid, params in _checked(iter_requests(text)))
        app.store.add(foreign_id, foreign_spool, spool_requests(foreign_spool, foreign))
        raise ApiError(529, "overloaded_error", "Overloaded", fault="foreign_batch")
    del text
    queued = app.store.queued()
    if queued + count > app.config.batch_queue_limit:
        spool.unlink(missing_ok=True)
        raise ApiError(429, "rate_limit_error",
                       f"Number of batch requests in the processing queue would exceed the limit of "
                       f"{app.config.batch_queue_limit} ({queued} queued, {count} submitted). "
                       "Wait for batches to finish before creating more.", [("retry-after", "60")])
    batch = app.store.add(batch_id, spool, count)
    if fault is not None and fault.kind == "create_overloaded":
        # The batch exists, but the answer is a 529: the client cannot know whether it was created.
        raise ApiError(529, "overloaded_error", "Overloaded", fault="create_overloaded")
    return Response.json(app.store.to_json(batch, request.base_url), batch_id=batch.id, requests=count)


def _batch(app: "App", request: Request) -> "Batch":
    batch_id = request.path.split("/")[4]
    batch = app.store.get(batch_id)
    if batch is None:
        raise not_found(f"message_batch {batch_id!r} was not found")
    return batch


def retrieve(app: "App", request: Request) -> Response:
    _throttle(app)
    batch = _batch(app, request)
    window = app.config.not_found_after_create
    if window > 0 and time.monotonic() - batch.created_mono < window:
        raise ApiError(404, "not_found_error", f"message_batch {batch.id!r} was not found", fault="not_found_after_create")
    return Response.json(app.store.to_json(batch, request.base_url), batch_id=batch.id)


def _limit(query: dict[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIST_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"limit: Input should be a valid integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise bad_request(f"limit: Input should be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    return limit


def listing(app: "App", request: Request) -> Response:
    _throttle(app)
    limit = _limit(request.query)
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if after and before:
        raise bad_request("after_id and before_id cannot be used together")
    batches = app.store.listing()
    ids = [b.id for b in batches]
    for cursor in (after, before):
        if cursor and cursor not in ids:
            raise bad_request(f"{'after_id' if cursor == after else 'before_id'}: unknown message_batch {cursor!r}")
    if before:
        end = ids.index(before)
        start = max(0, end - limit)
        page, has_more = batches[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after else 0
        page, has_more = batches[start:start + limit], start + limit < len(batches)
    for batch in page:
        app.store.refresh(batch)
    data = [app.store.to_json(b, request.base_url) for b in page]
    return Response.json({"data": data, "has_more": has_more,
                          "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})


def cancel(app: "App", request: Request) -> Response:
    _throttle(app)
    batch = _batch(app, request)
    if batch.status == "ended":
        raise bad_request(f"message_batch {batch.id!r} has already ended and cannot be canceled")
    if batch.status == "in_progress":
        app.store.cancel(batch)
    return Response.json(app.store.to_json(batch, request.base_url), batch_id=batch.id)


def delete(app: "App", request: Request) -> Response:
    _throttle(app)
    batch = _batch(app, request)
    if batch.status != "ended":
        raise bad_request(f"message_batch {batch.id!r} is {batch.status}; only an ended batch can be deleted "
                          "(cancel it first)")
    app.store.delete(batch)
    return Response.json({"id": batch.id, "type": "message_batch_deleted"}, batch_id=batch.id)


def results(app: "App", request: Request) -> Response:
    _throttle(app)
    batch = _batch(app, request)
    if batch.status != "ended":
        raise bad_request(f"message_batch {batch.id!r} is {batch.status}; results are available once it has ended")
    if batch.archived_at is not None:
        raise not_found(f"results of message_batch {batch.id!r} are no longer available: it was archived "
                        "29 days after creation")
    glitch = app.config.results_not_found_after_end
    if glitch > 0 and app.clock.now() - batch.ended_at < glitch:
        raise ApiError(404, "not_found_error", f"message_batch {batch.id!r} was not found",
                       fault="results_not_found_after_end")
    chunks = app.store.results(batch)
    return Response(200, chunks, "application/x-jsonl", batch_id=batch.id)
