"""Submitting a run's shards as Message Batches: never a batch created twice, whatever fails or is killed.

The create POST has no idempotency key, so a create whose answer was lost (timeout, dropped connection, 5xx,
or this process killed between "sent" and "journaled") may or may not have made a batch. The algorithm:

1. Journal `submit_intent` (round, shard, attempt, request count, first and last custom_id, body hash, time)
   — fsynced before the POST.
2. POST the body, streamed from the request file (`shards.ShardBody`), with SDK retries off.
3. On an answer: journal `batch_created`. On a definitive refusal: a 429 (rate or processing-queue limit)
   journals `create_refused` and the shard waits; a 400/413 journals `create_rejected` and stops with the
   API's message; 401/402/403 stop with the API's message.
4. On an ambiguous failure (no answer, a timeout, any 5xx including 529, a 408/409: `may_have_created`), or
   on restart with an intent and no outcome: *reconcile* — list the account's batches created since the
   shard's first intent (its journaled time, less a clock-skew margin), not claimed by this run, with the
   shard's request count. One match: adopt it (`batch_created`, reconciled), provisionally: when it ends,
   fetch checks that its results carry exactly the shard's custom_ids, and a batch of another job is
   disowned (`batch_disowned`, its results never recorded) and the shard created again. None: create
   again, under a new intent. Two or more: stop with an error naming them — guessing could bill a job
   twice. A list that fails (429, 5xx, no connection) is retried; it never settles the intent as "not
   created" (`reconcile_patiently`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from batchpilot.core import crash
from batchpilot.api.client import describe_api_error
from batchpilot.api.failures import api_message, describe
from batchpilot.core.clock import now_iso
from batchpilot.core.errors import BatchpilotError
from batchpilot.executors.batch.state import BatchState, RunState, ShardState, load_state, record
from batchpilot.core.progress import Progress
from batchpilot.executors.batch.shards import ShardBody, edge_ids, limits, plan_shards
from batchpilot.executors.uploads import beta_headers

CLOCK_SKEW = timedelta(minutes=10)  # our clock vs the API's, when matching created_at against an intent
MAX_CREATE_ATTEMPTS = 5
RECONCILE_ATTEMPTS = 6
LIST_PAGE = 100


@dataclass
class SubmitResult:
    """What one submit pass did."""

    created: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    blocked: str | None = None  # why shards are still pending (queue full), or None
    pending: int = 0


def plan_round(run_dir: Path, round_: int, source: str, ok_before: int = 0, selected: dict | None = None,
               max_requests: int | None = None, max_bytes: int | None = None) -> None:
    """Shard `source` (relative to the run) and journal the round's plan; the plan is fixed from then on."""
    n, b = limits(max_requests, max_bytes)
    shards = plan_shards(Path(run_dir) / source, n, b)
    record(run_dir, "round_planned", round=round_, source=source, requests=sum(s.requests for s in shards),
           shards=[s.to_json() for s in shards], ok_before=ok_before, selected=selected or {},
           limits={"requests": n, "bytes": b})


def ensure_first_round(run_dir: Path, state: RunState, **limit_kw: Any) -> RunState:
    """Plan round 1 from requests.jsonl unless the journal already has it."""
    if 1 not in state.rounds:
        plan_round(run_dir, 1, "requests.jsonl", **limit_kw)
        state = load_state(run_dir)
    return state


def submit_pending(client: Any, run_dir: Path, progress: Progress) -> SubmitResult:
    """Create a batch for every pending shard, in order, until done or the API says to wait."""
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    run_dir = Path(run_dir)
    result = SubmitResult()
    state = load_state(run_dir)
    if state.canceled or state.stopped:
        result.pending = len(state.pending())
        return result
    for shard in state.pending():
        source = run_dir / state.rounds[shard.round].source
        if shard.unknown:
            found = reconcile_patiently(client, run_dir, state, shard, progress)
            if found:
                result.reconciled.append(found)
                continue
        try:
            batch_id = _create_with_reconcile(client, run_dir, state, shard, source, progress)
        except anthropic.RateLimitError as exc:
            record(run_dir, "create_refused", round=shard.round, shard=shard.shard, status=429)
            result.blocked = f"the API refused a new batch for now (429: {api_message(exc)})"
            break
        result.created.append(batch_id)
        progress.stage(f"round {shard.round} shard {shard.shard}/{len(state.rounds[shard.round].shards)}: "
                       f"batch {batch_id} created ({shard.requests} requests)")
    result.pending = len(load_state(run_dir).pending())
    return result


def _create_with_reconcile(client: Any, run_dir: Path, state: RunState, shard: ShardState, source: Path,
                           progress: Progress) -> str:
    import anthropic  # API commands only: the SDK stays off the start-up path of the others
    from anthropic.types.messages import MessageBatch

    creator = client.with_options(max_retries=0)
    for attempt in range(MAX_CREATE_ATTEMPTS):
        number = len(shard.intents) + 1
        first_id, last_id = edge_ids(source, shard)
        # The time bounds what a reconcile may adopt: only a batch created after this intent (less clock skew).
        intent = {"round": shard.round, "shard": shard.shard, "attempt": number, "requests": shard.requests,
                  "first_custom_id": first_id, "last_custom_id": last_id, "bytes": shard.bytes, "sha256": shard.sha256,
                  "at": now_iso()}
        record(run_dir, "submit_intent", **intent)
        shard.intents.append(intent)
        body = ShardBody(source, shard)
        try:
            batch = creator.post("/v1/messages/batches", cast_to=MessageBatch, content=body,
                                 options={"headers": {"Content-Type": "application/json", **beta_headers(run_dir)}})
        except anthropic.APIError as exc:
            if not may_have_created(exc):
                _refused(run_dir, shard, exc)
            progress.warn(f"round {shard.round} shard {shard.shard}: create failed ambiguously ({describe(exc)}); "
                          "checking whether the batch exists before trying again")
            time.sleep(min(8.0, 0.5 * 2 ** attempt))
            found = reconcile_patiently(client, run_dir, state, shard, progress)
            if found:
                return found
            continue
        finally:
            body.close()
        crash.point("after-create-before-journal")
        _adopt(run_dir, state, shard, batch, reconciled=False)
        return batch.id
    raise BatchpilotError(f"round {shard.round} shard {shard.shard}: {MAX_CREATE_ATTEMPTS} create attempts failed "
                          "without an answer", "check the network or the API status, then re-run; nothing is created twice")


def may_have_created(exc: Exception) -> bool:
    """Whether a failed create may still have made a batch: no answer (timeout, dropped connection), any 5xx
    (529 included: under SDK 1.x OverloadedError is no InternalServerError), 408 or 409. Only another 4xx
    says for certain that nothing was created."""
    import anthropic  # only reached after a create failed: the SDK is loaded already

    if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError is one too
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(exc, anthropic.APIStatusError) and status is not None and (status >= 500 or status in (408, 409))


def _refused(run_dir: Path, shard: ShardState, exc: Any) -> None:
    """Journal a definitive refusal of a create (nothing was created) and raise: a 429 as it came (the shard
    waits), a 400/413/422 as a rejection of the shard, anything else as the API's Error/Hint."""
    status = getattr(exc, "status_code", None)
    if status == 429:
        raise exc
    if status in (400, 413, 422):
        record(run_dir, "create_rejected", round=shard.round, shard=shard.shard, status=status, message=api_message(exc))
        hint = ("lower BATCHPILOT_MAX_BATCH_BYTES so shards are smaller, then prepare a new run"
                if status == 413 else "fix the requests (see the message), prepare a new run, and submit it")
        raise BatchpilotError(f"the API rejected batch round {shard.round} shard {shard.shard} "
                              f"({status}): {api_message(exc)}", hint) from None
    record(run_dir, "create_refused", round=shard.round, shard=shard.shard, status=status)
    raise describe_api_error(exc) from None


def reconcile_patiently(client: Any, run_dir: Path, state: RunState, shard: ShardState, progress: Progress) -> str | None:
    """`reconcile`, retried while listing the batches fails (429, 5xx, no connection): an unanswered list
    says nothing about the create, so the intent stays unknown and nothing is created until a list answers."""
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    for attempt in range(1, RECONCILE_ATTEMPTS + 1):
        try:
            return reconcile(client, run_dir, state, shard, progress)
        except anthropic.APIError as exc:
            status = getattr(exc, "status_code", None)
            if not isinstance(exc, anthropic.APIConnectionError) and status != 429 and (status or 0) < 500:
                raise
            if attempt == RECONCILE_ATTEMPTS:
                raise BatchpilotError(
                    f"round {shard.round} shard {shard.shard}: cannot check whether its batch was created "
                    f"(listing batches failed {attempt} times: {describe(exc)})",
                    "re-run the same command when the API answers again; nothing is created before that check "
                    "succeeds") from None
            progress.warn(f"round {shard.round} shard {shard.shard}: listing batches failed ({describe(exc)}); "
                          "checking again")
            time.sleep(min(8.0, 0.5 * 2 ** attempt))
    return None


def _adopt(run_dir: Path, state: RunState, shard: ShardState, batch: Any, reconciled: bool) -> None:
    record(run_dir, "batch_created", round=shard.round, shard=shard.shard, batch_id=batch.id,
           requests=shard.requests, created_at=_iso(batch.created_at), expires_at=_iso(batch.expires_at),
           reconciled=reconciled)
    shard.batch_id = batch.id
    state.batches[batch.id] = BatchState(batch.id, shard.round, shard.shard, shard.requests,
                                         _iso(batch.created_at), _iso(batch.expires_at), reconciled=reconciled)


def reconcile(client: Any, run_dir: Path, state: RunState, shard: ShardState, progress: Progress) -> str | None:
    """Find the batch an unanswered create may have made; adopt it and return its id, or None."""
    since = _parse(shard.intents[0]["at"]) - CLOCK_SKEW if shard.intents and "at" in shard.intents[0] else None
    claimed = state.claimed_ids()
    matches = []
    for batch in client.messages.batches.list(limit=LIST_PAGE):
        if since is not None and batch.created_at < since:
            break  # newest first: everything after this is older still
        if batch.id in claimed:
            continue
        counts = batch.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        if total == shard.requests:
            matches.append(batch)
    if len(matches) > 1:
        names = ", ".join(f"{b.id} (created {_iso(b.created_at)})" for b in matches)
        raise BatchpilotError(
            f"round {shard.round} shard {shard.shard}: a create's answer was lost and {len(matches)} batches could be "
            f"it ({shard.requests} requests each): {names}",
            "find out which one belongs to another job (`batchpilot batches`); delete the others' stray one or wait "
            "until it is older than this run's intent, then re-run — batchpilot will not guess and risk paying twice")
    if matches:
        _adopt(run_dir, state, shard, matches[0], reconciled=True)
        progress.stage(f"round {shard.round} shard {shard.shard}: found batch {matches[0].id} from an unanswered create")
        return matches[0].id
    return None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


