"""The one failure taxonomy: what every mode does about an error the API (or the connection to it) gave.

Error *types* are the API's own words (`overloaded_error`, `billing_error`, ...) plus two of ours for
failures that never reached an answer (`connection_error`, `timeout_error`). Every type falls in one class:

* retryable — `RETRYABLE_ERRORS`: the same request may succeed later (5xx, 529, 429, 409, timeouts,
  dropped connections). The direct executor retries them with backoff; `retry` selects their items;
* permanent — `PERMANENT_ERRORS` (and any type not listed): the request itself must change first;
* account — `ACCOUNT_ERRORS`, or any message about credit, billing or a spend limit (`is_account_message`):
  no later request can succeed, so the whole run stops with the API's message (`account_error`).

An SDK exception is sorted by `classify` into what the direct executor does now (`rate_limited`,
`transient`, `permanent`, `account`); a batch round's errored lines are judged by `account_refusal`. Both
use the sets above, so the direct executor, the batch driver and `retry` never disagree about an item.
This module imports the SDK only inside `classify`, so commands that never call the API stay light.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from batchpilot.api.headers import lower_headers, parse_retry_after
from batchpilot.core.errors import BatchpilotError

RETRYABLE_ERRORS = frozenset({"api_error", "overloaded_error", "rate_limit_error", "timeout_error",
                              "conflict_error", "connection_error"})
ACCOUNT_ERRORS = frozenset({"authentication_error", "billing_error", "permission_error"})
PERMANENT_ERRORS = frozenset({"invalid_request_error", "not_found_error", "request_too_large"} | ACCOUNT_ERRORS)
# The API words low credit and a reached usage limit as a 400 invalid_request_error: these phrases (the API's
# own) mean the account. Bare words like "billing" or "payment" do not: a request can fail for a reason that
# merely mentions them, and stopping a whole run for it would be wrong.
ACCOUNT_MESSAGE = re.compile(r"credit balance|purchase credits|plans? & billing|usage limits?|spend limit", re.I)
SPEND_LIMIT_CODE = "enforced_spend_limit_reached"  # a 429 that no waiting will clear
ACCOUNT_STATUSES = frozenset({401, 402, 403})
TRANSIENT_STATUSES = frozenset({408, 409})  # plus every 5xx (529 included)
# The API's error type for an HTTP status, for answers whose body does not name one.
ERROR_TYPES_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                         403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
                         529: "overloaded_error"}
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
RETRY_AFTER_CAP = 300.0  # a server asking for more than this is treated as asking for this
ACCOUNT_FIXES = {
    "authentication_error": "check ANTHROPIC_API_KEY; create a key in the Claude Console",
    "permission_error": "the key may not use this model or feature; check the model id and the key's workspace",
    "billing_error": "add credits or raise the spend limit in the Claude Console",
}


def error_type_for_status(status: int | None) -> str:
    """The API's error type for an HTTP status; `api_error` for any status the API does not name."""
    return ERROR_TYPES_BY_STATUS.get(status or 0, "api_error")


def error_body(type_: str, message: str, **extra: Any) -> dict:
    """The API's error body `{"type": "error", "error": {"type", "message"}}`, plus `extra` keys (request_id)."""
    return {"type": "error", "error": {"type": type_, "message": message}, **extra}


def is_account_message(message: str | None) -> bool:
    """Whether an error message is about the account (credit, billing, a spend limit), whatever its type."""
    return bool(ACCOUNT_MESSAGE.search(message or ""))


@dataclass
class Failure:
    """An SDK exception, sorted: `kind` is rate_limited, transient, permanent or account."""

    kind: str
    error: dict  # {"type": "error", "error": {"type", "message"}, "request_id"}: the API's error body
    headers: dict = field(default_factory=dict)
    retry_after: float | None = None
    status: int | None = None
    # The request may have reached the server and been billed though no answer came back (a timeout, a
    # connection dropped after the request went out; not a connection that was never made).
    maybe_billed: bool = False

    @property
    def type(self) -> str:
        return self.error["error"]["type"]

    @property
    def message(self) -> str:
        return self.error["error"]["message"]


def classify(exc: Exception, timeout: float | None = None) -> Failure:
    """Sort an `anthropic` SDK exception into what to do about it (works with SDK 1.x and 2.x).

    `timeout` is the request timeout that was set, quoted in a timeout's message.
    """
    import anthropic  # only reached after a call failed: the SDK is loaded already

    if isinstance(exc, anthropic.APIStatusError):
        return _classify_status(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        after = f" after {timeout:.0f} s" if timeout else ""
        return Failure("transient", error_body("timeout_error", f"the request timed out{after}", request_id=None),
                       maybe_billed=True)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        # A connect error (refused, DNS, TLS: the transport's ConnectError/ConnectTimeout, matched by name so
        # as not to import the transport) means nothing was sent; anything later (the server closed the
        # connection, a read failed) may have come after the server took the request and billed it.
        never_sent = type(cause).__name__ in ("ConnectError", "ConnectTimeout") or isinstance(cause, ConnectionRefusedError)
        return Failure("transient", error_body("connection_error", f"connection failed: {type(cause).__name__}: {cause}",
                                               request_id=None), maybe_billed=not never_sent)
    return Failure("permanent", error_body("api_error", f"{type(exc).__name__}: {exc}", request_id=None))


def _classify_status(exc: Any) -> Failure:
    status = exc.status_code
    headers = lower_headers(exc.response.headers)
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    type_ = str(inner.get("type") or error_type_for_status(status))
    message = str(inner.get("message") or getattr(exc, "message", "") or f"HTTP {status}")
    request_id = body.get("request_id") or getattr(exc, "request_id", None) or headers.get("request-id")
    details = inner.get("details") if isinstance(inner.get("details"), dict) else {}
    should_retry = headers.get("x-should-retry")
    if status in ACCOUNT_STATUSES or type_ in ACCOUNT_ERRORS:
        kind = "account"
    elif status == 429:
        spend_cap = details.get("error_code") == SPEND_LIMIT_CODE or should_retry == "false"
        kind = "account" if spend_cap else "rate_limited"
    elif status == 400 and is_account_message(message):
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


def account_refusal(errors: Mapping[str, int], messages: Mapping[str, str], lines: int) -> tuple[str, str] | None:
    """(error type, API message) when a set of result lines shows the account refused, else None.

    `errors` counts the lines' error types, `messages` holds one message per type, `lines` is how many lines
    there were: any billing error, any message about credit or billing, or an authentication or permission
    error on every line (one such line among successes is about that request, not the account)."""
    if errors.get("billing_error"):
        return "billing_error", messages.get("billing_error", "")
    for etype, msg in messages.items():
        if is_account_message(msg):
            return etype, msg
    for etype in ("authentication_error", "permission_error"):
        if lines and errors.get(etype) == lines:
            return etype, messages.get(etype, "")
    return None


def account_error(etype: str, message: str, resume: str, status: int | None = None) -> BatchpilotError:
    """The Error/Hint for a run stopped by an account-level refusal; `resume` is the command that goes on."""
    fix = ACCOUNT_FIXES.get(etype, "check the account's credits and spend limits in the Claude Console")
    code = f"{status} " if status else ""
    return BatchpilotError(f"the API refused the account ({code}{etype}: {message}); the run stopped",
                           f"{fix}; results so far are kept, and `{resume}` resumes")


def api_message(exc: Any) -> str:
    """The API's own message in an SDK exception (its body's error.message), else the exception's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(exc, "message", exc))


def describe(exc: Exception | None) -> str:
    """A short description of a failed call for a warning line: `STATUS message`, or the exception's class."""
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status_code", None)
    return f"{status} {api_message(exc)}" if status else f"{type(exc).__name__}: {exc}"



def raise_if_unreachable(counts: dict, resume: str) -> None:
    """Nothing answered at all (every request failed to connect): a wrong ANTHROPIC_BASE_URL or no network,
    not N item failures to merge. `resume` is the command that sends them again."""
    if counts.get("succeeded") or set(counts.get("errored") or {}) != {"connection_error"}:
        return
    from batchpilot.api.client import shown_base_url  # the one redacting formatter of the API address

    base = shown_base_url()
    raise BatchpilotError(f"cannot reach the API at {base}: all {sum(counts['errored'].values())} request(s) "
                          "failed to connect", "check the network and ANTHROPIC_BASE_URL (or add --emulate to "
                          f"rehearse offline), then `{resume}` sends them again")
