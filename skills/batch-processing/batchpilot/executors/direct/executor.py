"""The direct executor: a prepared run's requests through `POST /v1/messages`, concurrently, at the account's
rate limit and never over it.

For jobs that cannot wait for a batch. The physical limit is the rate limit (requests, input tokens and
output tokens per minute, each a token bucket), so throughput is set by a client-side copy of those buckets
(`batchpilot.executors.direct.limiter.Limiter`), not by the concurrency ceiling. The algorithm, on one asyncio loop:

1. `results.jsonl` is read once: the ids that already succeeded are skipped (so a rerun after a crash or
   Ctrl-C sends no finished item again), and earlier attempt numbers are continued (`jobs.py`).
2. A dispatcher takes the next job: a retry whose backoff has passed (retries go ahead of new work), else
   the next line of `requests.jsonl` (streamed, never loaded whole).
3. It waits for a free slot (at most `concurrency` in flight; only one until the first response has told
   us the limits), for the budget (`max_cost`: every request in flight holds its worst-case cost, `budget`),
   and for the limiter to reserve one request, the input-token estimate and `max_tokens` of output.
4. The request goes out on its own task with SDK retries off (`max_retries=0`): this loop owns retries.
   * 200: the reservation is corrected from `usage`, the headers refresh the limits, and the result record
     is appended (fsynced) to `results.jsonl` before the item counts as done.
   * a failure is sorted by `api.failures.classify`: rate_limited (429: the reservation is returned, the
     bucket that ran out pauses for `retry-after`, the job goes to the front; up to MAX_RATE_LIMITED, not
     counted as attempts), transient (backoff, up to `max_attempts`, then errored), permanent (errored at
     once) or account (the run stops: nothing more is sent, in-flight requests finish, and `run_direct`
     raises an Error/Hint).
5. SIGINT (when `handle_sigint`): stop sending, give in-flight requests INTERRUPT_GRACE seconds to finish and
   be recorded, then return a receipt whose `stopped` is `interrupted`. A second SIGINT stops at once.

Every result record is a Message Batches result line plus `attempt`, `mode` and `at` (`batchpilot.rundir.records`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from batchpilot.executors.direct.budget import SENDS_FILE, Budget, SendLog, billed_so_far, run_prices
from batchpilot.api.failures import Failure, account_error, backoff, classify
from batchpilot.executors.direct.jobs import JobQueue, PendingRequest, ResultWriter, iter_jobs, read_ledger, sendable
from batchpilot.executors.direct.progress import DirectTally, tick
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.progress import Progress
from batchpilot.executors.direct.limiter import Limiter, Limits, Reservation
from batchpilot.rundir.records import result_record
from batchpilot.core.shell import next_command
from batchpilot.rundir.journal import journal
from batchpilot.rundir.lock import run_lock
from batchpilot.rundir.manifest import open_run


DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_ATTEMPTS = 5
MAX_RATE_LIMITED = 20  # 429s one item may take before it is recorded as errored (a limiter that cannot settle)
REQUEST_TIMEOUT = 600.0  # the floor of a request's timeout (explicit: the SDK's own default would refuse big ones)
# A non-streaming answer of max_tokens may take this long per output token: the SDK's own model of a long
# request (an hour for 128,000 tokens), so a slow answer is waited for instead of cut and sent again.
SECONDS_PER_MAX_TOKEN = 3600.0 / 128_000


def request_timeout(max_tokens: int) -> float:
    """Seconds to wait for one answer: never less than REQUEST_TIMEOUT, and long enough for `max_tokens`."""
    return max(REQUEST_TIMEOUT, SECONDS_PER_MAX_TOKEN * max(0, int(max_tokens)))


def streams(params: dict) -> bool:
    """Whether a request is sent streamed: when its answer may take over REQUEST_TIMEOUT by the SDK's own model
    (an hour per 128,000 max_tokens), or passes the model's non-streaming output limit. The API docs advise
    streaming (or batches) for long requests, because networks may drop a connection that sits idle while a
    long answer is written (https://platform.claude.com/docs/en/api/errors, "Long requests"); a stream keeps it
    busy, and its timeout applies between events, not to the whole answer. The SDK itself refuses such a
    request unstreamed unless a timeout is given (`_calculate_nonstreaming_timeout`)."""
    max_tokens = int(params.get("max_tokens") or 0)
    try:
        from anthropic._constants import MODEL_NONSTREAMING_TOKENS  # the SDK's table; private, so guarded
    except ImportError:
        MODEL_NONSTREAMING_TOKENS = {}
    limit = MODEL_NONSTREAMING_TOKENS.get(str(params.get("model")))
    return SECONDS_PER_MAX_TOKEN * max_tokens > REQUEST_TIMEOUT or bool(limit and max_tokens > limit)
OUTAGE_AFTER = 8  # requests in a row without an answer (no connection, timeout): the API is down, stop sending
INTERRUPT_GRACE = 10.0  # seconds in-flight requests get to finish after Ctrl-C
PROBE_WAIT = 5.0  # longest we send one request at a time while waiting for the first response's headers


class DirectExecutor:
    """One run of the direct executor; see the module docstring for the algorithm."""

    def __init__(self, run_dir: Path, client: Any, limits: Limits | None, concurrency: int, max_cost: float | None,
                 max_attempts: int, progress: Progress | None, handle_sigint: bool, interrupt_grace: float,
                 requests_file: Path | None = None):
        self.run_dir = Path(run_dir)
        # A retry round (rounds/direct-N.jsonl): all its lines are sent, answered items included, because the
        # caller chose them (an invalid answer is a success to be repaired).
        self.requests_file = Path(requests_file) if requests_file else None
        manifest = open_run(self.run_dir)
        prices = run_prices(manifest, self.run_dir)
        recorded, maybe = billed_so_far(self.run_dir, prices)
        self.budget = Budget(prices, max_cost, recorded + maybe)
        self.client = client
        self.flags = limits or Limits()
        self.limiter = Limiter(self.flags.rpm, self.flags.itpm, self.flags.otpm)
        self.concurrency = max(1, int(concurrency))
        self.max_attempts = max(1, int(max_attempts))
        self.progress = progress or Progress(quiet=True)
        self.handle_sigint = handle_sigint
        self.interrupt_grace = interrupt_grace
        self.results_path = self.run_dir / "results.jsonl"
        self.writer = ResultWriter(self.results_path)
        self.sends = SendLog(self.run_dir / SENDS_FILE)  # each send written down before it goes out
        self.send_ids = itertools.count(1)
        self.connection_failures = 0  # in a row, across all requests: OUTAGE_AFTER of them stop the run
        self.tally = DirectTally(int(manifest.get("item_count") or 0))
        self.queue = JobQueue(iter(()))
        self.inflight: dict[asyncio.Task, PendingRequest] = {}
        self.wake = asyncio.Event()
        # Outcome.
        self.stopping: str | None = None  # interrupted | max_cost | account_error | outage | crashed
        self.fatal: Failure | None = None
        self.outage: Failure | None = None
        self.crash: BaseException | None = None
        self.interrupts = 0

    # --------------------------------------------------------------- dispatch

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

    async def _dispatch(self) -> None:
        while self.stopping is None:
            now = time.monotonic()
            job = self.queue.next(now)
            if job is None:
                if self.queue.empty() and not self.inflight:
                    return
                await self._sleep(self.queue.wait(now))
                continue
            if not await self._admit(job):
                self.queue.front.appendleft(job)
                return

    def _ceiling(self) -> int:
        """Requests allowed in flight: one until a response has shown the limits (or PROBE_WAIT passed)."""
        if self.limiter.calibrated or time.monotonic() > self.tally.started + PROBE_WAIT:
            return self.concurrency
        return 1

    async def _admit(self, job: PendingRequest) -> bool:
        """Wait for a slot, the budget and the limiter; start the job's task. False when the run stopped."""
        while self.stopping is None and len(self.inflight) >= self._ceiling():
            probing = self.tally.started + PROBE_WAIT - time.monotonic()
            await self._sleep(probing if not self.limiter.calibrated and probing > 0 else None)
        worst = self.budget.worst_case(job.params, job.input_tokens)
        while self.stopping is None and not self.budget.fits(worst):
            if not self.inflight:
                self._stop("max_cost")
                break
            await self._sleep(None)
        reservation = None
        input_tokens = self.budget.pace_tokens(job.input_tokens)
        # Journaled before it can go out, and before the limiter's reservation (so no fsync sits between a
        # reservation and its send): if this process dies with it in flight, the next one counts its worst
        # case against --max-cost (budget.billed_so_far), because the API may have billed it.
        job.send_id = f"{os.getpid()}-{next(self.send_ids)}"
        self.sends.write({"send": job.send_id, "custom_id": job.custom_id, "worst_usd": round(worst, 8)})
        while self.stopping is None:
            reservation, wait = self.limiter.try_reserve(input_tokens, job.max_tokens)
            if reservation is not None:
                break
            await self._sleep(wait)
        if self.stopping is not None:
            if reservation is not None:
                self.limiter.release(reservation)
            self.sends.write({"send": job.send_id, "answered": True})  # never sent: nothing billed
            return False
        self.budget.hold(worst)
        task = asyncio.ensure_future(self._run(job, reservation, worst))
        self.inflight[task] = job
        return True

    # ------------------------------------------------------------------ one request

    async def _run(self, job: PendingRequest, reservation: Reservation, worst: float) -> None:
        import anthropic  # API commands only: the SDK stays off the start-up path of the others

        job.sends += 1
        job.responded = job.recorded = False
        self.tally.sent += 1
        required, extra = sendable(job.params)
        try:
            try:
                body, headers = await self._call(required, extra, job.max_tokens)
            except anthropic.APIError as exc:
                job.responded = True
                failure = classify(exc, request_timeout(job.max_tokens))
                if failure.maybe_billed:
                    # No answer, but the API may have billed one (a dropped connection, a timeout): its worst
                    # case counts against --max-cost now, and its sends.jsonl line stays unanswered, so the
                    # next invocation counts it too (budget.billed_so_far), before anything is sent again.
                    self.budget.charge_unanswered(worst)
                await self._failed(job, reservation, failure)
                if not job.recorded and not failure.maybe_billed:  # a refusal, a 429: it billed nothing
                    self.sends.write({"send": job.send_id, "answered": True})
                return
            job.responded = True
            await self._succeeded(job, reservation, body, headers)
        except asyncio.CancelledError:
            if not job.responded:
                self.limiter.settle(reservation, reservation.input_tokens, 0)
                self.tally.abandoned += 1
            raise
        except BaseException as exc:  # a bug: stop the run, keep the traceback for the caller
            self.crash = exc
            self._stop("crashed")
        finally:
            self.budget.release(worst)
            self.inflight.pop(asyncio.current_task(), None)
            self.wake.set()

    async def _call(self, required: dict, extra: dict, max_tokens: int) -> tuple[dict, Any]:
        """Send one request; its answer's Message as JSON and the response headers (SDK errors propagate)."""
        import anthropic

        if not streams(required):
            raw = await self.client.messages.with_raw_response.create(
                **required, extra_body=extra or None, timeout=request_timeout(max_tokens))
            await raw.parse()  # the SDK's check that this is a Message
            return raw.http_response.json(), raw.headers
        # A long answer is streamed and assembled by the SDK; REQUEST_TIMEOUT then bounds each wait for an event.
        async with self.client.messages.stream(**required, extra_body=extra or None, timeout=REQUEST_TIMEOUT) as stream:
            try:
                message = await stream.get_final_message()
            except anthropic.APIError:
                raise
            except Exception as exc:  # the stream broke mid-answer: like a dropped connection, it may be billed
                raise anthropic.APIConnectionError(message=f"the answer's stream broke: {type(exc).__name__}: {exc}",
                                                   request=stream.response.request) from exc
            return message.model_dump(mode="json"), stream.response.headers

    async def _succeeded(self, job: PendingRequest, reservation: Reservation, body: dict, headers: Any) -> None:
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        counted_input = int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
        # Cache reads do not count toward the input-token limit (on most models); writes do.
        self.limiter.settle(reservation, counted_input, int(usage.get("output_tokens") or 0))
        self.limiter.observe(headers)
        self.budget.charge(usage, job.input_tokens)
        self.connection_failures = 0
        await self.writer.write(result_record(job.custom_id, {"type": "succeeded", "message": body}, job.attempt,
                                              "direct", send=job.send_id))
        job.recorded = True
        self.tally.answered(usage)

    async def _failed(self, job: PendingRequest, reservation: Reservation, failure: Failure) -> None:
        if failure.kind == "rate_limited":
            self.tally.rate_limited += 1
            job.rate_limited += 1
            self.limiter.rate_limited(failure.headers, reservation, failure.retry_after)
            if job.rate_limited <= MAX_RATE_LIMITED:
                self.queue.front.append(job)
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
        if failure.type in ("connection_error", "timeout_error"):
            self.connection_failures += 1
            if self.connection_failures >= OUTAGE_AFTER:
                self._stop("outage")
            if self.stopping == "outage":
                self.outage = failure
                return  # not an item failure: the item stays unsent, and the resumed run sends it
        else:
            self.connection_failures = 0
        if failure.type == "timeout_error":
            # The API may have produced (and billed) an answer we stopped waiting for: never sent again by
            # this run. Recorded without its send id, so its worst case stays counted against --max-cost
            # (budget.billed_so_far), and `retry` re-sends it only when asked.
            await self._record_error(job, failure, send=None)
            return
        if failure.kind == "transient":
            job.failures += 1
            if job.failures < self.max_attempts and self.stopping is None:
                self.tally.retried += 1
                self.queue.retry_at(job, time.monotonic() + backoff(job.failures, failure.retry_after))
                return
        await self._record_error(job, failure)

    async def _record_error(self, job: PendingRequest, failure: Failure, send: str | None = "") -> None:
        result = {"type": "errored", "error": failure.error}  # the API's body as it came, request_id included
        send = job.send_id if send == "" else send
        await self.writer.write(result_record(job.custom_id, result, job.attempt, "direct",
                                              **({"send": send} if send else {})))
        job.recorded = True
        self.tally.errored[failure.type] += 1

    # ------------------------------------------------------------------ signals and the run

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

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        tally = self.tally
        done, prior = read_ledger(self.results_path)
        if self.requests_file is not None:
            done, tally.total_items = set(), sum(1 for _ in iter_jobs(self.requests_file, set(), prior))
        tally.already_done = len(done)
        tally.todo = max(0, tally.total_items - len(done))
        self.queue = JobQueue(iter_jobs(self.requests_file or self.run_dir / "requests.jsonl", done, prior))
        installed = False
        if self.handle_sigint and threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
            installed = True
        journal(self.run_dir, "direct_started", todo=tally.todo, already_succeeded=len(done),
                limits={"rpm": self.flags.rpm, "itpm": self.flags.itpm, "otpm": self.flags.otpm},
                concurrency=self.concurrency, max_cost=self.budget.max_cost, max_attempts=self.max_attempts)
        self.progress.stage(f"direct: {tally.todo} request(s) to send, {len(done)} already succeeded")
        tally.started = time.monotonic()
        ticker = asyncio.ensure_future(tick(tally, self.limiter, self.progress, lambda: self.budget.spent))
        not_run = 0
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
                self.sends.close()
                ticker.cancel()
                if installed:
                    loop.remove_signal_handler(signal.SIGINT)
                # The last frame shows the final count, not the one of the last tick.
                self.progress.update(tally.finished, tally.todo, tally.label(self.limiter, self.budget.spent))
                self.progress.done()
                # Jobs still queued count as not run; so does anything requests.jsonl had left.
                not_run = max(0, tally.todo - tally.finished)
                journal(self.run_dir, "direct_stopped", reason=self.stopping or "done", **tally.journal_fields(not_run),
                        cost_usd=round(self.budget.spent, 6))
        duration = time.monotonic() - tally.started
        if self.crash is not None:
            raise self.crash
        if self.fatal is not None:
            raise account_error(self.fatal.type, self.fatal.message, next_command("direct", self.run_dir), self.fatal.status)
        if self.stopping == "outage":
            raise self._outage_error()
        return self._receipt(duration, not_run)

    def _outage_error(self) -> BatchpilotError:
        """The Error/Hint of a run stopped because the API stopped answering (OUTAGE_AFTER failures in a row)."""
        from batchpilot.api.client import shown_base_url  # the one redacting formatter of the API address

        base = shown_base_url()
        done = self.tally.already_done + self.tally.succeeded
        why = self.outage.message if self.outage else "connection failed"
        return BatchpilotError(
            f"cannot reach the API at {base}: {OUTAGE_AFTER} requests in a row got no answer ({why}); sending "
            f"stopped with {done} of {self.tally.total_items} item(s) answered",
            f"check the network and the API status, then `{next_command('direct', self.run_dir)}` sends the rest "
            "(answered items are kept and never sent again)")

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
        return {"run": str(self.run_dir), "mode": "direct", **self.tally.receipt(duration, not_run),
                "cost_usd": round(self.budget.spent, 6), "max_cost_usd": self.budget.max_cost,
                "run_spent_usd": round(self.budget.spent_before + self.budget.spent + self.budget.maybe, 6),
                "budget_left_usd": None if self.budget.left() is None else round(self.budget.left(), 6),
                "limits": self.limiter.describe(), "concurrency": self.concurrency, "stopped": self.stopping,
                "files": {"results": str(self.results_path)}}


async def run_direct_async(run_dir: Path | str, client: Any, *, limits: Limits | None = None,
                           concurrency: int = DEFAULT_CONCURRENCY, max_cost: float | None = None,
                           max_attempts: int = DEFAULT_MAX_ATTEMPTS, progress: Progress | None = None,
                           handle_sigint: bool = False, interrupt_grace: float = INTERRUPT_GRACE,
                           requests_file: Path | str | None = None) -> dict:
    """`run_direct` inside a running event loop (the client must be an `AsyncAnthropic`)."""
    with run_lock(Path(run_dir)):
        executor = DirectExecutor(Path(run_dir), client, limits, concurrency, max_cost, max_attempts, progress,
                                  handle_sigint, interrupt_grace, requests_file)
        return await executor.run()


def run_direct(run_dir: Path | str, client: Any, *, limits: Limits | None = None,
               concurrency: int = DEFAULT_CONCURRENCY, max_cost: float | None = None,
               max_attempts: int = DEFAULT_MAX_ATTEMPTS, progress: Progress | None = None,
               handle_sigint: bool = False, interrupt_grace: float = INTERRUPT_GRACE,
               requests_file: Path | str | None = None) -> dict:
    """Send a prepared run's outstanding requests through the Messages API at the rate limit; return the receipt.

    `client` is an `anthropic.AsyncAnthropic` built with `max_retries=0` (this function owns retries), e.g.
    from `api.api_client(emulate, async_client=True, max_retries=0)`. It runs its own event loop and closes
    the client's connections at the end. `requests_file` (a retry round) replaces requests.jsonl, and all of its
    lines are sent, answered items included. Raises BatchpilotError for a run that cannot start (no run, no price)
    or that the API stopped at the account level; item failures are counts in the receipt.
    """

    async def main() -> dict:
        try:
            return await run_direct_async(run_dir, client, limits=limits, concurrency=concurrency, max_cost=max_cost,
                                          max_attempts=max_attempts, progress=progress, handle_sigint=handle_sigint,
                                          interrupt_grace=interrupt_grace, requests_file=requests_file)
        finally:
            await client.close()

    return asyncio.run(main())
