"""Fault injection: rules that make chosen requests fail the way the real API sometimes does.

A rule is a kind, a rate, an optional regex and an optional cap on how often it fires:

    kind=overloaded,rate=0.03            3% of requests
    kind=errored,match=^bad-             every batch request whose custom_id matches
    kind=drop_results,times=1            only the first results download

Decisions never touch global random state: each one hashes (seed, kind, key) to a number in [0, 1) and
compares it with the rate, so a run is reproducible and a 3% rate hits about 3% of the items. The key is
`batch_id/custom_id` for a batch request (a retry in a new batch draws again), and for a Messages request
its content hash plus how many times that same request was seen (a client's retry draws again).

What each kind does:

| kind | POST /v1/messages | a batch request (its result line) |
|---|---|---|
| overloaded | 529 overloaded_error | errored, overloaded_error |
| api_error | 500 api_error | errored, api_error |
| rate_limit | 429 rate_limit_error with retry-after | — |
| errored | 400 invalid_request_error | errored, invalid_request_error |
| billing | 402 billing_error, the low-credit message | errored, billing_error, the low-credit message |
| low_credit | 400 invalid_request_error, the low-credit message | errored, invalid_request_error, same message |
| expired | — | expired |
| invalid_json | the text is not valid JSON | same |
| truncate | stop_reason max_tokens, output cut | same |
| refusal | stop_reason refusal | same |
| slow | answered `slow_seconds` later | — |
| drop_results | — | the results download is cut mid-stream (at the first matching custom_id, else halfway) |
| foreign_batch | — | a batch create: another client creates a batch of the same size (custom_ids `foreign-…`) first, and this create answers 529 without making a batch |
| drop_answer | the answer is made and billed, then the connection closes with no response | — |
| create_overloaded | — | a batch create: the batch is made, but the answer is a 529 (the client cannot tell) |

`low_credit` is what the real API was seen to send when an account runs out of credit (the batch line of
anthropic-api.md 3.3): an invalid_request_error whose message alone says it is about the account.
`billing` is the same refusal under the API's own `billing_error` type (HTTP 402).

For Messages requests `match` is searched in the text of the last user turn; for batch requests in the
custom_id; for the batch-create kinds in the new batch's id (key and subject), so `times` caps them.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "overloaded", "api_error", "rate_limit", "errored", "billing", "low_credit", "expired",
    "invalid_json", "truncate", "refusal", "slow", "drop_results", "foreign_batch", "create_overloaded",
    "drop_answer",
)
LOW_CREDIT_MESSAGE = ("Your credit balance is too low to access the Anthropic API. "
                      "Please go to Plans & Billing to upgrade or purchase credits.")
# Faults that replace a Messages answer with an HTTP error: (status, error type, message).
HTTP_FAULTS = {
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "api_error": (500, "api_error", "Internal server error"),
    "rate_limit": (429, "rate_limit_error", "This request would exceed your rate limit (emulated fault)."),
    "errored": (400, "invalid_request_error", "Request rejected (emulated fault)."),
    "billing": (402, "billing_error", LOW_CREDIT_MESSAGE),
    "low_credit": (400, "invalid_request_error", LOW_CREDIT_MESSAGE),
}
# Faults that turn a batch request into an errored line: error type and message.
LINE_ERRORS = {
    "overloaded": ("overloaded_error", "Overloaded"),
    "api_error": ("api_error", "Internal server error"),
    "errored": ("invalid_request_error", "Request rejected (emulated fault)."),
    "billing": ("billing_error", LOW_CREDIT_MESSAGE),
    "low_credit": ("invalid_request_error", LOW_CREDIT_MESSAGE),
}
# Faults that change the model's answer rather than replacing it.
ANSWER_FAULTS = ("invalid_json", "truncate", "refusal")


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) for these parts."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class FaultRule:
    """One fault: `kind` fires for a fraction `rate` of the requests that `match` (regex) selects, at most
    `times` times in total (None: no cap)."""

    kind: str
    rate: float = 1.0
    match: str | None = None
    times: int | None = None
    _fired: int = field(default=0, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is unknown; use one of {', '.join(KINDS)}")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"fault rate {self.rate!r} must be between 0 and 1")
        self.rate = float(self.rate)
        try:
            self._regex = re.compile(self.match) if self.match else None
        except re.error as exc:
            raise ValueError(f"fault pattern {self.match!r}: {exc}") from None

    @classmethod
    def parse(cls, spec: str) -> "FaultRule":
        """`kind=overloaded,rate=0.03,match=^err-,times=2`, or the short forms `overloaded` and `overloaded=0.03`."""
        spec = spec.strip()
        if "," not in spec and not spec.startswith("kind="):
            kind, _, rate = spec.partition("=")
            return cls(kind=kind.strip(), rate=float(rate) if rate else 1.0)
        values: dict[str, Any] = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"fault {spec!r}: {part!r} is not key=value")
            values[key.strip()] = value
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FaultRule":
        unknown = set(values) - {"kind", "rate", "match", "times"}
        if unknown or "kind" not in values:
            raise ValueError(f"fault {values!r}: needs kind; may have rate, match, times (not {sorted(unknown)})")
        try:
            rate = float(values.get("rate", 1.0))
            times = int(values["times"]) if values.get("times") not in (None, "") else None
        except (TypeError, ValueError):
            raise ValueError(f"fault {values!r}: rate must be a number and times an integer") from None
        return cls(kind=str(values["kind"]), rate=rate, match=values.get("match") or None, times=times)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rate": self.rate, "match": self.match, "times": self.times, "fired": self._fired}

    def selects(self, subject: str) -> bool:
        return self._regex is None or self._regex.search(subject) is not None

    def decide(self, seed: int, key: str, subject: str, consume: bool = True) -> bool:
        """Whether this rule fires for the request identified by `key` (pattern tested on `subject`)."""
        if not self.selects(subject) or unit_hash(seed, self.kind, key) >= self.rate:
            return False
        if self.times is None or not consume:
            return True
        with self._lock:
            if self._fired >= self.times:
                return False
            self._fired += 1
            return True


class FaultPlan:
    """The configured rules, asked per request; counts what fired for the stats endpoint."""

    def __init__(self, rules: list[FaultRule], seed: int):
        self.rules = rules
        self.seed = seed
        self.fired: dict[str, int] = {}
        self._lock = threading.Lock()

    def first(self, kinds: tuple[str, ...] | dict, key: str, subject: str, count: bool = True) -> FaultRule | None:
        """The first rule among `kinds` that fires for this request, or None. `count=False` for decisions that
        are recomputed (batch lines): they ignore `times` and are not counted as fired."""
        for rule in self.rules:
            if rule.kind in kinds and rule.decide(self.seed, key, subject, consume=count):
                if count:
                    with self._lock:
                        self.fired[rule.kind] = self.fired.get(rule.kind, 0) + 1
                return rule
        return None

    def has(self, *kinds: str) -> bool:
        return any(rule.kind in kinds for rule in self.rules)

    def reset(self) -> None:
        with self._lock:
            self.fired.clear()
            for rule in self.rules:
                rule._fired = 0
