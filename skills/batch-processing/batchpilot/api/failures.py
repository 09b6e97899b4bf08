"""What the direct executor does about a failed request: sort the SDK's exception, and back off.

Every failure falls into one of four kinds, and the executor acts on the kind alone:

* `rate_limited` — a 429 from a per-minute limit: give the reservation back, pause the bucket that ran out
  for `retry-after`, and send the item again (429s do not use up its attempts);
* `transient` — 408, 409, any 5xx (529 included), connection errors and timeouts, or an explicit
  `x-should-retry: true`: retry with backoff up to the attempt limit;
* `permanent` — any other 4xx, or `x-should-retry: false`: record the item as errored, do not retry;
* `account` — authentication, billing/credit, permission, or a spend limit: no later request can succeed,
  so the whole run stops with the API's message.

The error types recorded for transient failures are the ones `statuses.RETRYABLE_ERROR_TYPES` names, so the
`retry` command later picks exactly the items a retry can fix.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.executors.direct.limiter import lower_headers, parse_retry_after
from batchpilot.rundir.records import error_body, error_type_for_status

TRANSIENT_STATUSES = frozenset({408, 409})  # plus every 5xx (529 included)
ACCOUNT_STATUSES = frozenset({401, 402, 403})
ACCOUNT_ERROR_TYPES = frozenset({"authentication_error", "billing_error", "permission_error"})
# A 400 that is about the account, not the request: the API words low credit as an invalid_request_error.
ACCOUNT_MESSAGE = re.compile(r"credit balance|purchase credits|plans? & billing|usage limits?|spend limit", re.I)
SPEND_LIMIT_CODE = "enforced_spend_limit_reached"  # a 429 that no waiting will clear
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
RETRY_AFTER_CAP = 300.0  # a server asking for more than this is treated as asking for this


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


def classify(exc: Exception, timeout: float | None = None) -> Failure:
    """Sort an `anthropic` SDK exception into what the executor does about it (works with SDK 1.x and 2.x).

    `timeout` is the request timeout that was set, quoted in a timeout's message.
    """
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        return _classify_status(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        after = f" after {timeout:.0f} s" if timeout else ""
        return Failure("transient", error_body("timeout_error", f"the request timed out{after}", request_id=None))
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        return Failure("transient", error_body("connection_error", f"connection failed: {type(cause).__name__}: {cause}",
                                               request_id=None))
    return Failure("permanent", error_body("api_error", f"{type(exc).__name__}: {exc}", request_id=None))


def _classify_status(exc: Exception) -> Failure:
    status = exc.status_code
    headers = lower_headers(exc.response.headers)
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    type_ = str(inner.get("type") or error_type_for_status(status))
    message = str(inner.get("message") or getattr(exc, "message", "") or f"HTTP {status}")
    request_id = body.get("request_id") or getattr(exc, "request_id", None) or headers.get("request-id")
    details = inner.get("details") if isinstance(inner.get("details"), dict) else {}
    should_retry = headers.get("x-should-retry")
    if status in ACCOUNT_STATUSES or type_ in ACCOUNT_ERROR_TYPES:
        kind = "account"
    elif status == 429:
        spend_cap = details.get("error_code") == SPEND_LIMIT_CODE or should_retry == "false"
        kind = "account" if spend_cap else "rate_limited"
    elif status == 400 and ACCOUNT_MESSAGE.search(message):
        kind = "account"
    elif should_retry in ("true", "false"):
        kind = "transient" if should_retry == "true" else "permanent"
    elif status in TRANSIENT_STATUSES or status >= 500:
        kind = "transient"
    else:
        kind = "permanent"
    error = error_body(type_, message, request_id=request_id)
    return Failure(kind, error, headers, parse_retry_after(headers), status)


def backoff(failures: int, retry_after: float | None) -> float:
    """Seconds before retry number `failures`: the server's retry-after when given, else capped exponential
    backoff with jitter (the SDK's shape; the jitter needs no seed)."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, RETRY_AFTER_CAP)
    return min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_CAP) * (1 - 0.25 * random.random())


def account_error(failure: Failure, run_dir: Path) -> BatchpilotError:
    """The Error/Hint for a run stopped by an account-level refusal."""
    from batchpilot.api.client import API_KEY_ENV

    hints = {
        "authentication_error": f"check {API_KEY_ENV}; create a key in the Claude Console",
        "permission_error": "the key may not use this model or feature; check the model id and the key's workspace",
        "billing_error": "add credits or raise the spend limit in the Claude Console",
    }
    hint = hints.get(failure.type, "check the account's credits and spend limits in the Claude Console")
    return BatchpilotError(
        f"the API refused the account ({failure.status} {failure.type}: {failure.error['error']['message']}); "
        "the run stopped",
        f"{hint}; results so far are kept, and `batchpilot direct {run_dir}` resumes",
    )


def raise_if_unreachable(counts: dict, resume: str) -> None:
    """Nothing answered at all (every request failed to connect): a wrong ANTHROPIC_BASE_URL or no network,
    not N item failures to merge. `resume` is the command that sends them again."""
    if counts.get("succeeded") or set(counts.get("errored") or {}) != {"connection_error"}:
        return
    import os

    from batchpilot.core.errors import BatchpilotError

    base = os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
    raise BatchpilotError(f"cannot reach the API at {base}: all {sum(counts['errored'].values())} request(s) "
                          "failed to connect", "check the network and ANTHROPIC_BASE_URL (or add --emulate to "
                          f"rehearse offline), then `{resume}` sends them again")
