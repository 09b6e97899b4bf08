"""Retry rounds: classify every item's latest outcome and resubmit only what a retry can fix.

Categories of an item's latest result record (the highest `attempt`, then the later line):

* `ok` — succeeded;
* retryable — errored with a type in `api.failures.RETRYABLE_ERRORS` (server, overload, rate limit,
  timeout, conflict, connection); `expired`; `missing` (no result at all, e.g. a batch whose results were
  lost or never submitted);
* permanent — errored with any other type (`api.failures.PERMANENT_ERRORS` names the API's): a retry would
  fail the same way;
* `canceled` — retried only when asked (`--only canceled`).

* `invalid` — succeeded, but merge rejects the answer (SELECTORS below); counted apart from `ok` when selected.

A round is a file `rounds/round-N.jsonl` holding the selected items' request lines (same custom_ids,
allowed across batches): the original lines, except the follow-ups of `invalid` items (journaled as
`round_rewritten`, with how many were repaired each way). It is sharded and submitted like round 1.
Rounds stop at `max_rounds`, or when the previous retry round turned no item `ok` (no progress), or at an
account-level failure (`api.failures.account_refusal`), which stops the job with the API's message instead
of resubmitting into the same wall.

Extension point: `SELECTORS` maps a `--only` word to a function `(run_dir) -> {custom_id: category}` for
selections that need more than the API's outcome, and `REWRITERS` maps a category to a function
`(run_dir) -> ((custom_id, request line) -> request line)` for items whose round line is not the original.
`invalid` is registered in both: answers merge would reject (no usable JSON, or JSON that breaks the schema)
are re-asked with the previous answer and the validator's message (`repair.py`). The `retry` command selects
`invalid` by default; `run` does not (its rounds resend failed requests unchanged).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from batchpilot.api.failures import PERMANENT_ERRORS, RETRYABLE_ERRORS
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import damaged, parse_json, safe_dir
from batchpilot.results.repair import Repairer, select_invalid
from batchpilot.rundir.journal import journal
from batchpilot.rundir.records import custom_id_of

DEFAULT_SELECTION = frozenset(RETRYABLE_ERRORS | {"expired", "missing"})
DEFAULT_MAX_ROUNDS = 4
RETRY_DEFAULT = frozenset(DEFAULT_SELECTION | {"invalid"})  # `retry` without --only


SELECTORS: dict[str, Callable[[Path], dict[str, str]]] = {"invalid": select_invalid}
REWRITERS: dict[str, Callable[[Path], Callable[[str, bytes], bytes]]] = {"invalid": Repairer}

_HEAD = re.compile(rb'^\{"custom_id":"([A-Za-z0-9_-]{1,64})","result":\{"type":"([a-z_]+)"')
_ATTEMPT = re.compile(rb',"attempt":(\d+),"mode":"[a-z]+","at":"[^"]*","batch_id":"[^"]*"\}$')


@dataclass
class Classification:
    """Items by category (`ok`, an error type, `expired`, `canceled`, `missing`), and the selected ids."""

    counts: Counter = field(default_factory=Counter)
    selected: dict[str, str] = field(default_factory=dict)  # custom_id -> category

    @property
    def ok(self) -> int:
        return self.counts["ok"]


def parse_only(only: str | None) -> frozenset[str]:
    """`--only` words → categories. Without `--only`: retryable and invalid. `retryable` is DEFAULT_SELECTION;
    error types, expired, missing, canceled, `errored` (every error type) and the words in SELECTORS
    (`invalid`) may be named."""
    if not only:
        return RETRY_DEFAULT
    words: set[str] = set()
    for raw in only.split(","):
        word = raw.strip()
        if not word:
            continue
        if word == "retryable":
            words |= DEFAULT_SELECTION
        elif word == "errored":
            words |= RETRYABLE_ERRORS | PERMANENT_ERRORS | {"errored"}
        elif word in RETRYABLE_ERRORS | PERMANENT_ERRORS | {"expired", "missing", "canceled"} or word in SELECTORS:
            words.add(word)
        else:
            raise BatchpilotError(f"--only {word!r} is not a result type",
                                  "use retryable, invalid, expired, missing, canceled, errored, or an error type such as "
                                  "overloaded_error or billing_error (comma-separated)")
    return frozenset(words)


def _latest(run_dir: Path) -> dict[str, tuple[int, str]]:
    """custom_id -> (attempt, category) of its latest record in results.jsonl, except that a success sticks.

    Merge calls an item ok (or invalid) once any attempt succeeded, whatever failed after it, so selection
    must too: attempt numbers come from different executors (a direct retry's tries, a batch round's number)
    and a later-numbered failure must never send a succeeded item out again."""
    latest: dict[str, tuple[int, str]] = {}
    path = run_dir / "results.jsonl"
    if not path.exists():
        return latest
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                break  # a torn tail from a killed append (fetch truncates it before recording again)
            line = line.rstrip()
            head, tail = _HEAD.match(line), _ATTEMPT.search(line)
            if head and tail and head.group(2) != b"errored":
                custom_id, kind, attempt = head.group(1).decode(), head.group(2).decode(), int(tail.group(1))
            else:
                try:
                    rec = parse_json(line)
                except ValueError as exc:
                    raise damaged(f"results.jsonl line {number}", f"not valid JSON ({exc})") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("result"), dict) \
                        or not isinstance(rec.get("custom_id"), str):
                    continue  # malformed: merge counts it (results.ledger), and the item stays `missing`
                result = rec.get("result") or {}
                custom_id, kind = rec.get("custom_id"), result.get("type")
                attempt = rec.get("attempt") if isinstance(rec.get("attempt"), int) else 0
                if kind == "errored":
                    err = result.get("error") if isinstance(result.get("error"), dict) else {}
                    inner = err.get("error") if isinstance(err.get("error"), dict) else err
                    kind = str(inner.get("type") or "unknown_error")
            category = "ok" if kind == "succeeded" else str(kind)
            old = latest.get(custom_id)
            if old is None or (old[1] != "ok" and (category == "ok" or attempt >= old[0])):
                latest[custom_id] = (attempt, category)
    return latest


def classify(run_dir: Path, selection: frozenset[str] = DEFAULT_SELECTION) -> Classification:
    """Every item of the run (requests.jsonl order) by latest outcome; the ones in `selection` selected.

    An item a selector picks is counted under the selector's category (an `invalid` answer is not `ok`)."""
    run_dir = Path(run_dir)
    latest = _latest(run_dir)
    out = Classification()
    extra: dict[str, str] = {}
    for word in selection & set(SELECTORS):
        extra.update(SELECTORS[word](run_dir))
    errored_all = "errored" in selection
    with open(run_dir / "requests.jsonl", "rb") as fh:
        for number, line in enumerate(fh, 1):
            custom_id = custom_id_of(line, f"requests.jsonl line {number}")
            category = extra.get(custom_id) or latest.get(custom_id, (0, "missing"))[1]
            out.counts[category] += 1
            if custom_id in extra:
                out.selected[custom_id] = extra[custom_id]
            elif category in selection or (errored_all and category not in ("ok", "expired", "canceled", "missing")):
                out.selected[custom_id] = category
    return out


def write_round_file(run_dir: Path, round_: int, selected: dict[str, str], prefix: str = "round") -> str:
    """Write the selected items' request lines into rounds/<prefix>-N.jsonl (atomic); return its relative path.

    A line is the original request, or for a category in REWRITERS (`invalid`) the rewritten one."""
    run_dir = Path(run_dir)
    folder = safe_dir(run_dir, "rounds")
    rel = f"rounds/{prefix}-{round_}.jsonl"
    tmp = folder / f".{prefix}-{round_}.jsonl.tmp"
    rewrite = {c: REWRITERS[c](run_dir) for c in set(selected.values()) & set(REWRITERS)}
    with open(run_dir / "requests.jsonl", "rb") as src, open(tmp, "wb") as dst:
        for number, line in enumerate(src, 1):
            custom_id = custom_id_of(line, f"requests.jsonl line {number}")
            category = selected.get(custom_id)
            if category is None:
                continue
            line = line if line.endswith(b"\n") else line + b"\n"
            if category in rewrite:
                line = rewrite[category](custom_id, line)
            dst.write(line)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, run_dir / rel)
    for category, fn in rewrite.items():
        counts = getattr(fn, "counts", None)
        if counts:
            journal(run_dir, "round_rewritten", source=rel, category=category, how=dict(sorted(counts.items())))
    return rel
