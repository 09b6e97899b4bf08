"""The direct executor: a prepared run's requests through `POST /v1/messages`, concurrently, at the account's
rate limit and never over it.

For jobs that cannot wait for a batch. The physical limit is the rate limit (requests, input tokens and
output tokens per minute, each a token bucket), so throughput is set by a client-side copy of those buckets
(`batchpilot.ratelimit.Limiter`), not by the concurrency ceiling. The algorithm, on one asyncio loop:

1. `results.jsonl` is read once: the ids that already succeeded are skipped (so a rerun after a crash or
   Ctrl-C sends no finished item again), and earlier attempt numbers are continued.
2. A dispatcher takes the next job: a retry whose backoff has passed (retries go ahead of new work), else
   the next line of `requests.jsonl` (streamed, never loaded whole).
3. It waits for a free slot (at most `concurrency` in flight; only one until the first response has told
   us the limits), for the budget (`max_cost`: every request in flight holds its worst-case cost), and for
   the limiter to reserve one request, the input-token estimate and `max_tokens` of output.
4. The request goes out on its own task with SDK retries off (`max_retries=0`): this loop owns retries.
   * 200: the reservation is corrected from `usage`, the headers refresh the limits, and the result record
     is appended (fsynced) to `results.jsonl` before the item counts as done.
   * 429: the reservation is returned, the bucket that ran out is paused for `retry-after`, and the job goes
     back to the front of the queue. 429s do not use up an item's attempts (up to MAX_RATE_LIMITED).
   * 408/409/5xx/529, connection errors, timeouts: retried with exponential backoff (or the server's
     `retry-after`) up to `max_attempts`, then recorded as errored.
   * other 4xx: recorded as errored, not retried.
   * authentication, billing/credit, permission, spend-limit errors: the account cannot continue, so the run
     stops: nothing more is sent, in-flight requests finish, and `run_direct` raises an Error/Hint.
5. SIGINT (when `handle_sigint`): stop sending, give in-flight requests INTERRUPT_GRACE seconds to finish and
   be recorded, then return a receipt whose `stopped` is `interrupted`. A second SIGINT stops at once.

Every result record is a Message Batches result line plus `attempt`, `mode` and `at` (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from batchpilot.errors import BatchpilotError
from batchpilot.files import append_jsonl, iter_jsonl
from batchpilot.models import CACHE_WRITE_1H, CACHE_WRITE_5M, Prices, cost_usd
from batchpilot.progress import Progress
from batchpilot.ratelimit import Limiter, Reservation, lower_headers, parse_retry_after
from batchpilot.runs import journal, now_iso, open_run
from batchpilot.tokens import estimate_input_tokens, request_segments

DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_ATTEMPTS = 5
MAX_RATE_LIMITED = 20  # 429s one item may take before it is recorded as errored (a limiter that cannot settle)
REQUEST_TIMEOUT = 600.0  # explicit, which also lifts the SDK's "streaming is required" guard for large max_tokens
INTERRUPT_GRACE = 10.0  # seconds in-flight requests get to finish after Ctrl-C
PROBE_WAIT = 5.0  # longest we send one request at a time while waiting for the first response's headers
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
PROGRESS_EVERY = 0.5
# The token estimate (characters / 4) is not the API's tokenizer. Answers tell us how far off it is: the limiter
# reserves estimate x the mean ratio seen, and the cost guard assumes estimate x the largest ratio seen x
# COST_MARGIN (x INITIAL_COST_RATIO before the first answer), so a low estimate cannot overspend the budget.
COST_MARGIN = 1.1
INITIAL_COST_RATIO = 1.5
RATE_WINDOW = 10.0  # seconds of history behind the rates on the progress line
# Keys a requests.jsonl body may carry that must not go to POST /v1/messages: we need one JSON answer.
CLIENT_ONLY_KEYS = ("stream",)
TRANSIENT_STATUSES = frozenset({408, 409})  # plus every 5xx (529 included)
ACCOUNT_ERROR_TYPES = frozenset({"authentication_error", "billing_error", "permission_error"})
# A 400 that is about the account, not the request (the API words these as invalid_request_error).
ACCOUNT_MESSAGE = re.compile(r"credit balance|purchase credits|plans? & billing|usage limits?|spend limit", re.I)


@dataclass
class Limits:
    """Per-minute limits given by the user; None: learn it from the API's rate-limit headers."""

    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None


@dataclass
class Failure:
    """An SDK exception, sorted: `kind` is rate_limited, transient, permanent or account."""

    kind: str
    error: dict  # {"type": "error", "error": {"type", "message"}, "request_id"}: the API's error body
    headers: dict = field(default_factory=dict)
    retry_after: float | None = None
    status: int | None = None

    @property
    def type(self) -> str:
        return self.error["error"]["type"]


def classify(exc: Exception) -> Failure:
    """Sort an `anthropic` SDK exception into what the executor does about it (works with SDK 1.x and 2.x)."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        headers = lower_headers(exc.response.headers)
        body = exc.body if isinstance(exc.body, dict) else {}
        inner = body.get("error") if isinstance(body.get("error"), dict) else {}
        type_ = str(inner.get("type") or _type_for_status(status))
        message = str(inner.get("message") or getattr(exc, "message", "") or f"HTTP {status}")
        request_id = body.get("request_id") or getattr(exc, "request_id", None) or headers.get("request-id")
        error = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
        details = inner.get("details") if isinstance(inner.get("details"), dict) else {}
        should_retry = headers.get("x-should-retry")
        retry_after = parse_retry_after(headers)
        if status in (401, 402, 403) or type_ in ACCOUNT_ERROR_TYPES:
            kind = "account"
        elif status == 429:
            spend_cap = details.get("error_code") == "enforced_spend_limit_reached" or should_retry == "false"
            kind = "account" if spend_cap else "rate_limited"
        elif status == 400 and ACCOUNT_MESSAGE.search(message):
            kind = "account"
        elif should_retry == "true":
            kind = "transient"
        elif should_retry == "false":
            kind = "permanent"
        elif status in TRANSIENT_STATUSES or status >= 500:
            kind = "transient"
        else:
            kind = "permanent"
        return Failure(kind, error, headers, retry_after, status)
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure("transient", _error("timeout_error", f"the request timed out after {REQUEST_TIMEOUT:.0f} s"))
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        return Failure("transient", _error("connection_error", f"connection failed: {type(cause).__name__}: {cause}"))
    return Failure("permanent", _error("api_error", f"{type(exc).__name__}: {exc}"))


def _error(type_: str, message: str, request_id: str | None = None) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}


def _type_for_status(status: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
            404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
            504: "timeout_error", 529: "overloaded_error"}.get(status, "api_error")


def worst_case_cost(params: dict, input_tokens: int, prices: Prices) -> float:
    """USD this request can cost at most (standard price): every input token billed, the cacheable prefix as
    a cache write, and all of `max_tokens` as output."""
    prefix, multiplier, running = 0, 1.0, 0
    for segment in request_segments(params):
        running += segment.tokens
        if segment.cache_ttl:
            prefix = running
            multiplier = max(multiplier, CACHE_WRITE_1H if segment.cache_ttl == "1h" else CACHE_WRITE_5M)
    prefix = min(prefix, input_tokens)
    billed_input = (input_tokens - prefix) + prefix * multiplier
    return (billed_input * prices.input + int(params.get("max_tokens") or 0) * prices.output) / 1_000_000


def sendable(params: dict) -> tuple[dict, dict]:
    """(the SDK's required keyword arguments, everything else as `extra_body`), minus client-only keys.

    Passing the rest as `extra_body` sends it verbatim, so a field this SDK version has no argument for
    (or a newer API field) still reaches the API instead of failing with a TypeError.
    """
    body = {k: v for k, v in params.items() if k not in CLIENT_ONLY_KEYS and not k.startswith("_")}
    required = {k: body.pop(k) for k in ("model", "max_tokens", "messages") if k in body}
    return required, body


def backoff(failures: int, retry_after: float | None) -> float:
    """Seconds before retry number `failures`: the server's retry-after when given, else capped exponential
    backoff with jitter (the SDK's shape, deterministic jitter is not needed here)."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, 300.0)
    import random

    return min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_CAP) * (1 - 0.25 * random.random())


@dataclass
class Job:
    custom_id: str
    params: dict
    input_tokens: int
    max_tokens: int
    prior_attempt: int = 0  # highest attempt number already in results.jsonl for this id
    sends: int = 0
    rate_limited: int = 0
    failures: int = 0
    responded: bool = False  # the HTTP call returned: the task is only recording now


def read_ledger(results_path: Path) -> tuple[set[str], dict[str, int]]:
    """(ids that already succeeded, highest attempt recorded per id) from results.jsonl."""
    done: set[str] = set()
    attempts: dict[str, int] = {}
    for record in iter_jsonl(results_path):
        cid = record.get("custom_id")
        result = record.get("result")
        if not isinstance(cid, str) or not isinstance(result, dict):
            continue
        if result.get("type") == "succeeded":
            done.add(cid)
        attempt = record.get("attempt")
        if type(attempt) is int and attempt > attempts.get(cid, 0):
            attempts[cid] = attempt
    return done, attempts


def run_prices(manifest: dict, run_dir: Path) -> Prices:
    """The run's prices from run.json; an unknown model's missing price fails closed."""
    prices = manifest.get("prices")
    if not isinstance(prices, dict) or prices.get("input_per_mtok") is None or prices.get("output_per_mtok") is None:
        raise BatchpilotError(
            f"{run_dir / 'run.json'}: no price for model {manifest.get('model')!r}, so the cost cannot be bounded",
            "prepare the run again with --price-in and --price-out (USD per million tokens) for this model",
        )
    return Prices(float(prices["input_per_mtok"]), float(prices["output_per_mtok"]), float(prices.get("read_multiplier") or 0.1))


class ResultWriter:
    """Appends result records with group commit: concurrent writers share one fsync; `write` returns only
    once the caller's record is on disk."""

    def __init__(self, path: Path):
        self.path = path
        self.pending: list[dict] = []
        self.lock = asyncio.Lock()

    async def write(self, record: dict) -> None:
        self.pending.append(record)
        async with self.lock:
            if not self.pending:
                return  # an earlier holder wrote ours with its batch
            batch, self.pending = self.pending, []
            await asyncio.to_thread(append_jsonl, self.path, batch)


class DirectExecutor:
    """One run of the direct executor; see the module docstring for the algorithm."""

    def __init__(self, run_dir: Path, client: Any, limits: Limits | None, concurrency: int, max_cost: float | None,
                 max_attempts: int, progress: Progress | None, handle_sigint: bool, interrupt_grace: float):
        self.run_dir = Path(run_dir)
        self.manifest = open_run(self.run_dir)
        self.prices = run_prices(self.manifest, self.run_dir)
        self.client = client
        limits = limits or Limits()
        self.flags = limits
        self.limiter = Limiter(limits.rpm, limits.itpm, limits.otpm)
        self.concurrency = max(1, int(concurrency))
        self.max_cost = max_cost
        self.max_attempts = max(1, int(max_attempts))
        self.progress = progress or Progress(quiet=True)
        self.handle_sigint = handle_sigint
        self.interrupt_grace = interrupt_grace
        self.results_path = self.run_dir / "results.jsonl"
        self.writer = ResultWriter(self.results_path)
        # Queue state.
        self.retries: list[tuple[float, int, Job]] = []  # (ready_at, seq, job): a heap
        self.front: deque[Job] = deque()  # 429'd and interrupted jobs: before everything else
        self.seq = itertools.count()
        self.source: Iterator[Job] | None = None
        self.exhausted = False
        self.inflight: dict[asyncio.Task, Job] = {}
        self.wake: asyncio.Event | None = None
        # Outcome.
        self.stopping: str | None = None  # interrupted | max_cost | account_error | crashed
        self.fatal: Failure | None = None
        self.crash: BaseException | None = None
        self.interrupts = 0
        self.total_items = int(self.manifest.get("item_count") or 0)
        self.todo = 0
        self.already_done = 0
        self.succeeded = 0
        self.errored: Counter = Counter()
        self.sent = 0
        self.rate_limited = 0
        self.retried = 0
        self.abandoned = 0
        self.tokens = Counter()
        self.spent = 0.0
        self.reserved_cost = 0.0
        self.recent: deque[tuple[float, int, int, int]] = deque()  # (t, requests, input, output), RATE_WINDOW
        self.ratio_sum, self.ratio_count, self.ratio_max = 0.0, 0, 0.0  # counted / estimated input tokens
        self.started = 0.0
        self.not_run = 0
        self.limits_reported = False

    # ------------------------------------------------------------------ queue

    def _jobs(self, done: set[str], prior: dict[str, int]) -> Iterator[Job]:
        for number, line in enumerate(iter_jsonl(self.run_dir / "requests.jsonl"), 1):
            cid, params = line.get("custom_id"), line.get("params")
            if not isinstance(cid, str) or not isinstance(params, dict):
                raise BatchpilotError(f"requests.jsonl line {number}: expected {{\"custom_id\", \"params\"}}",
                                      "the run directory was edited or damaged; prepare the run again")
            if cid in done:
                continue
            yield Job(cid, params, estimate_input_tokens(params), int(params.get("max_tokens") or 0), prior.get(cid, 0))

    def _next_job(self, now: float) -> Job | None:
        if self.front:
            return self.front.popleft()
        if self.retries and self.retries[0][0] <= now:
            return heapq.heappop(self.retries)[2]
        if not self.exhausted:
            job = next(self.source, None)
            if job is not None:
                return job
            self.exhausted = True
        return None

    def _idle(self) -> bool:
        return self.exhausted and not self.front and not self.retries and not self.inflight

    async def _sleep(self, timeout: float | None) -> None:
        """Wait until something changes (a task ends, a signal) or `timeout` seconds pass."""
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _stop(self, reason: str) -> None:
        if self.stopping is None:
            self.stopping = reason
        self.wake.set()

    # --------------------------------------------------------------- dispatch

    async def _dispatch(self) -> None:
        while self.stopping is None:
            now = time.monotonic()
            job = self._next_job(now)
            if job is None:
                if self._idle():
                    return
                wait = self.retries[0][0] - now if self.retries and not self.front else None
                await self._sleep(wait)
                continue
            if not await self._admit(job):
                self.front.appendleft(job)
                return

    def _ceiling(self) -> int:
        """Requests allowed in flight: one until a response has shown the limits (or PROBE_WAIT passed)."""
        if self.limiter.calibrated or time.monotonic() > self.started + PROBE_WAIT:
            return self.concurrency
        return 1

    async def _admit(self, job: Job) -> bool:
        """Wait for a slot, the budget and the limiter; start the job's task. False when the run stopped."""
        while self.stopping is None and len(self.inflight) >= self._ceiling():
            probing = self.started + PROBE_WAIT - time.monotonic()
            await self._sleep(probing if not self.limiter.calibrated and probing > 0 else None)
        cost_ratio = max(1.0, self.ratio_max) * COST_MARGIN if self.ratio_count else INITIAL_COST_RATIO
        worst = worst_case_cost(job.params, math.ceil(job.input_tokens * cost_ratio), self.prices)
        while self.stopping is None and self.max_cost is not None \
                and self.spent + self.reserved_cost + worst > self.max_cost + 1e-12:
            if not self.inflight:
                self._stop("max_cost")
                break
            await self._sleep(None)
        reservation = None
        pace_ratio = self.ratio_sum / self.ratio_count if self.ratio_count else 1.0
        input_tokens = math.ceil(job.input_tokens * pace_ratio)
        while self.stopping is None:
            reservation, wait = self.limiter.try_reserve(input_tokens, job.max_tokens)
            if reservation is not None:
                break
            await self._sleep(wait)
        if self.stopping is not None:
            if reservation is not None:
                self.limiter.release(reservation)
            return False
        self.reserved_cost += worst
        task = asyncio.ensure_future(self._run(job, reservation, worst))
        self.inflight[task] = job
        return True

    # ------------------------------------------------------------------ one request

    async def _run(self, job: Job, reservation: Reservation, worst: float) -> None:
        import anthropic

        job.sends += 1
        job.responded = False
        self.sent += 1
        required, extra = sendable(job.params)
        try:
            try:
                raw = await self.client.messages.with_raw_response.create(
                    **required, extra_body=extra or None, timeout=REQUEST_TIMEOUT)
                await raw.parse()  # the SDK's check that this is a Message
            except anthropic.APIError as exc:
                job.responded = True
                await self._failed(job, reservation, classify(exc))
                return
            job.responded = True
            await self._succeeded(job, reservation, raw)
        except asyncio.CancelledError:
            if not job.responded:
                self.limiter.settle(reservation, reservation.input_tokens, 0)
                self.abandoned += 1
            raise
        except BaseException as exc:  # a bug: stop the run, keep the traceback for the caller
            self.crash = exc
            self._stop("crashed")
        finally:
            self.reserved_cost -= worst
            self.inflight.pop(asyncio.current_task(), None)
            self.wake.set()

    async def _succeeded(self, job: Job, reservation: Reservation, raw: Any) -> None:
        body = raw.http_response.json()
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        inp = int(usage.get("input_tokens") or 0)
        out = int(usage.get("output_tokens") or 0)
        write = int(usage.get("cache_creation_input_tokens") or 0)
        read = int(usage.get("cache_read_input_tokens") or 0)
        # Cache reads do not count toward the input-token limit (on most models); writes do.
        self.limiter.settle(reservation, inp + write, out)
        self.limiter.observe(raw.headers)
        self.spent += cost_usd(self.prices, usage, batch=False)
        self.tokens.update(input=inp, output=out, cache_write=write, cache_read=read)
        if job.input_tokens:
            ratio = (inp + write + read) / job.input_tokens
            self.ratio_sum += ratio
            self.ratio_count += 1
            self.ratio_max = max(self.ratio_max, ratio)
        self.recent.append((time.monotonic(), 1, inp + write, out))
        await self.writer.write(self._record(job, {"type": "succeeded", "message": body}))
        self.succeeded += 1

    async def _failed(self, job: Job, reservation: Reservation, failure: Failure) -> None:
        if failure.kind == "rate_limited":
            self.rate_limited += 1
            job.rate_limited += 1
            self.limiter.rate_limited(failure.headers, reservation, failure.retry_after)
            if job.rate_limited <= MAX_RATE_LIMITED:
                self.front.append(job)
                return
            await self._record_error(job, failure)
            return
        # The server admitted the request (it took a request and the input) but produced no output.
        self.limiter.settle(reservation, reservation.input_tokens, 0)
        if failure.headers:
            self.limiter.observe(failure.headers)
        if failure.kind == "account":
            if self.fatal is None:
                self.fatal = failure
            self._stop("account_error")
            return
        if failure.kind == "transient":
            job.failures += 1
            if job.failures < self.max_attempts and self.stopping is None:
                self.retried += 1
                ready = time.monotonic() + backoff(job.failures, failure.retry_after)
                heapq.heappush(self.retries, (ready, next(self.seq), job))
                return
        await self._record_error(job, failure)

    async def _record_error(self, job: Job, failure: Failure) -> None:
        await self.writer.write(self._record(job, {"type": "errored", "error": failure.error}))
        self.errored[failure.type] += 1

    def _record(self, job: Job, result: dict) -> dict:
        return {"custom_id": job.custom_id, "result": result, "attempt": job.prior_attempt + job.sends,
                "mode": "direct", "at": now_iso()}

    # ------------------------------------------------------------------ progress and signals

    def _on_sigint(self) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.progress.stage(f"interrupted: sending stopped; waiting up to {self.interrupt_grace:.0f} s for "
                                f"{len(self.inflight)} request(s) in flight (Ctrl-C again to stop now)")
            self._stop("interrupted")
        else:
            for task, job in list(self.inflight.items()):
                if not job.responded:
                    task.cancel()

    def _rates(self, now: float) -> tuple[float, float, float]:
        """Requests, input and output tokens per minute over the last RATE_WINDOW seconds."""
        while self.recent and self.recent[0][0] < now - RATE_WINDOW:
            self.recent.popleft()
        window = max(min(RATE_WINDOW, now - self.started), 1e-6)
        return tuple(sum(r[i] for r in self.recent) / window * 60 for i in (1, 2, 3))  # type: ignore[return-value]

    def _sustainable_per_minute(self) -> float | None:
        """Items per minute the known limits allow in the long run, at the average item's measured size."""
        finished = self.succeeded or 1
        sizes = {"requests": 1.0, "input_tokens": (self.tokens["input"] + self.tokens["cache_write"]) / finished,
                 "output_tokens": self.tokens["output"] / finished}
        rates = [b.limit / sizes[dim] for dim, b in self.limiter.buckets.items() if b.limit and sizes[dim] > 0]
        return min(rates) if rates else None

    def _progress_label(self) -> str:
        now = time.monotonic()
        req, inp, out = self._rates(now)
        limits = self.limiter.describe()

        def against(value: float, dim: str) -> str:
            limit = limits[dim]["per_minute"]
            return f"{_short(value)}/{_short(limit) if limit else '?'}"

        left = self.todo - self.succeeded - sum(self.errored.values())
        pace = min(filter(None, (req, self._sustainable_per_minute())), default=0.0)
        eta = f"{left / pace * 60:.0f}s" if pace > 0 else "?"
        return (f"{self.succeeded} ok {sum(self.errored.values())} err | {against(req, 'requests')} rpm | "
                f"in {against(inp, 'input_tokens')} out {against(out, 'output_tokens')} tpm | "
                f"429s {self.rate_limited} | ${self.spent:.4f} | ETA {eta}")

    async def _ticker(self) -> None:
        while True:
            finished = self.succeeded + sum(self.errored.values())
            self.progress.update(finished, self.todo, self._progress_label())
            if self.limiter.calibrated and not self.limits_reported:
                self.limits_reported = True
                described = ", ".join(f"{dim.replace('_', ' ')} {_short(v['per_minute']) if v['per_minute'] else 'unknown'}"
                                      f"/min ({v['source']})" for dim, v in self.limiter.describe().items())
                self.progress.stage(f"limits: {described}")
            await asyncio.sleep(PROGRESS_EVERY)

    # ------------------------------------------------------------------ the run

    async def run(self) -> dict:
        self.wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        done, prior = read_ledger(self.results_path)
        self.already_done = len(done)
        self.todo = max(0, self.total_items - len(done))
        self.source = self._jobs(done, prior)
        installed = False
        if self.handle_sigint and threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
            installed = True
        journal(self.run_dir, "direct_started", todo=self.todo, already_succeeded=len(done),
                limits={"rpm": self.flags.rpm, "itpm": self.flags.itpm, "otpm": self.flags.otpm},
                concurrency=self.concurrency, max_cost=self.max_cost, max_attempts=self.max_attempts)
        self.progress.stage(f"direct: {self.todo} request(s) to send, {len(done)} already succeeded")
        self.started = time.monotonic()
        ticker = asyncio.ensure_future(self._ticker())
        try:
            await self._dispatch()
        except BaseException as exc:
            # Library callers without handle_sigint get Ctrl-C as a cancellation: treat it as an interrupt.
            self._stop("interrupted" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else "crashed")
            raise
        finally:
            try:
                await self._drain()  # whatever happened, answers already paid for are recorded
            finally:
                ticker.cancel()
                if installed:
                    loop.remove_signal_handler(signal.SIGINT)
                self.progress.done()
                # Jobs still queued count as not run; so does anything requests.jsonl had left.
                self.not_run = max(0, self.todo - self.succeeded - sum(self.errored.values()))
                journal(self.run_dir, "direct_stopped", reason=self.stopping or "done", succeeded=self.succeeded,
                        errored=sum(self.errored.values()), not_run=self.not_run, requests_sent=self.sent,
                        rate_limited=self.rate_limited, cost_usd=round(self.spent, 6))
        duration = time.monotonic() - self.started
        if self.crash is not None:
            raise self.crash
        if self.fatal is not None:
            raise account_error(self.fatal, self.run_dir)
        return self._receipt(duration, self.not_run)

    async def _drain(self) -> None:
        """Let in-flight requests finish; after an interrupt, only for the grace period."""
        if not self.inflight:
            return
        if self.stopping == "interrupted":
            deadline = time.monotonic() + self.interrupt_grace
            while self.inflight and time.monotonic() < deadline and self.interrupts < 2:
                await self._sleep(deadline - time.monotonic())
            for task, job in list(self.inflight.items()):
                if not job.responded:
                    task.cancel()
        while self.inflight:
            await asyncio.gather(*list(self.inflight), return_exceptions=True)

    def _receipt(self, duration: float, not_run: int) -> dict:
        finished = self.succeeded + sum(self.errored.values())
        return {
            "run": str(self.run_dir),
            "mode": "direct",
            "items": self.total_items,
            "counts": {
                "succeeded": self.succeeded,
                "errored": dict(sorted(self.errored.items())),
                "skipped_already_done": self.already_done,
                "not_run": not_run,
            },
            "requests_sent": self.sent,
            "rate_limited_429": self.rate_limited,
            "retries": self.retried,
            "abandoned_in_flight": self.abandoned,
            "tokens": {k: self.tokens.get(k, 0) for k in ("input", "output", "cache_read", "cache_write")},
            "cost_usd": round(self.spent, 6),
            "max_cost_usd": self.max_cost,
            "limits": self.limiter.describe(),
            "concurrency": self.concurrency,
            "duration_s": round(duration, 3),
            "requests_per_minute": round(finished / duration * 60, 1) if duration > 0 else None,
            "stopped": self.stopping,
            "files": {"results": str(self.results_path)},
        }


def _short(value: float | None) -> str:
    if value is None:
        return "?"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= 10 * scale:
            return f"{value / scale:.0f}{suffix}"
    return f"{value:.0f}"


def account_error(failure: Failure, run_dir: Path) -> BatchpilotError:
    """The Error/Hint for a run stopped by an account-level refusal."""
    from batchpilot.api import API_KEY_ENV

    hints = {
        "authentication_error": f"check {API_KEY_ENV}; create a key in the Claude Console",
        "permission_error": "the key may not use this model or feature; check the model id and the key's workspace",
        "billing_error": "add credits or raise the spend limit in the Claude Console",
    }
    hint = hints.get(failure.type, "check the account's credits and spend limits in the Claude Console")
    return BatchpilotError(
        f"the API refused the account ({failure.status} {failure.type}: {failure.error['error']['message']}); the run stopped",
        f"{hint}; results so far are kept, and `batchpilot direct {run_dir}` resumes",
    )


async def run_direct_async(run_dir: Path | str, client: Any, *, limits: Limits | None = None,
                           concurrency: int = DEFAULT_CONCURRENCY, max_cost: float | None = None,
                           max_attempts: int = DEFAULT_MAX_ATTEMPTS, progress: Progress | None = None,
                           handle_sigint: bool = False, interrupt_grace: float = INTERRUPT_GRACE) -> dict:
    """`run_direct` inside a running event loop (the client must be an `AsyncAnthropic`)."""
    executor = DirectExecutor(Path(run_dir), client, limits, concurrency, max_cost, max_attempts, progress,
                              handle_sigint, interrupt_grace)
    return await executor.run()


def run_direct(run_dir: Path | str, client: Any, *, limits: Limits | None = None,
               concurrency: int = DEFAULT_CONCURRENCY, max_cost: float | None = None,
               max_attempts: int = DEFAULT_MAX_ATTEMPTS, progress: Progress | None = None,
               handle_sigint: bool = False, interrupt_grace: float = INTERRUPT_GRACE) -> dict:
    """Send a prepared run's outstanding requests through the Messages API at the rate limit; return the receipt.

    `client` is an `anthropic.AsyncAnthropic` built with `max_retries=0` (this function owns retries), e.g.
    from `api.api_client(emulate, async_client=True, max_retries=0)`. It runs its own event loop and closes
    the client's connections at the end. Raises BatchpilotError for a run that cannot start (no run, no price)
    or that the API stopped at the account level; item failures are counts in the receipt.
    """

    async def main() -> dict:
        try:
            return await run_direct_async(run_dir, client, limits=limits, concurrency=concurrency, max_cost=max_cost,
                                          max_attempts=max_attempts, progress=progress, handle_sigint=handle_sigint,
                                          interrupt_grace=interrupt_grace)
        finally:
            await client.close()

    return asyncio.run(main())
