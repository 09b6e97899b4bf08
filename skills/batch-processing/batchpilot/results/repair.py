"""Repair: re-ask only the items whose answer failed validation, showing the model its answer and why.

`retry --only invalid` selects the items merge would call `invalid` (an answer came back, but it holds no
usable JSON or the JSON breaks the schema) and writes, for each, a follow-up request instead of the
original one, so the model fixes its output rather than starting over:

    original messages
    + assistant: the previous answer (its text; for the tool style its text and tool_use blocks)
    + user:      the validator's message with JSON paths (for the tool style a `tool_result`, `is_error: true`,
                 for each tool_use id, as the API requires after a tool call)

The conversation always ends with a user turn: the JSON-schema output mode refuses an assistant prefill,
and a complete earlier assistant turn followed by a user turn is an ordinary conversation, not a prefill.
The follow-up is built from the original request line (`requests.jsonl`) and the newest answer, so a second
repair does not grow the conversation.

Some answers cannot be fixed by feedback:

* cut off at `max_tokens` (stop_reason `max_tokens`, whatever the fragment holds): asking again with the same limit would cut it again, so the
  original request goes out with `max_tokens` doubled (from the larger of the request's limit and the
  tokens the cut answer used), capped at the model's output limit;
* a refusal, an empty or paused answer, or the context window exceeded: the original request goes out
  unchanged (a fresh try).

Which items are invalid is decided exactly as merge decides it (the same ledger, `results.ledger`, and judge),
so `retry --only invalid` re-asks precisely the items `merged.jsonl` lists as `invalid`, and never an
item that is `ok`. The answers stay in results.jsonl; only a byte offset and the error are kept per item.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.core.files import dumps
from batchpilot.core.models import accepts_forced_tool, find_model
from batchpilot.prepare.build import TOOL_NAME
from batchpilot.results.judge import open_view, output_style
from batchpilot.results.ledger import OFFSET_MASK, index_items, outcome, scan_results
from batchpilot.rundir.manifest import open_run

CATEGORY = "invalid"  # the `--only` word and the retry category
MAX_TOKENS_FACTOR = 2
# Error types (extract.py, judge.py) that the model can fix when it is shown its answer and the message.
FEEDBACK_TYPES = frozenset({"schema", "no_json", "not_object", "wrong_tool", "no_tool_call"})
SCHEMA_LEAD = "Your previous answer did not match the required JSON Schema:"
FRAGMENT_LEAD = ("Your previous answer was not one complete JSON object, and the JSON found in it did not match "
                 "the required JSON Schema:")
OTHER_LEAD = "Your previous answer could not be used:"
JSON_TAIL = "Reply again with only the corrected JSON object."
TOOL_TAIL = f"Call {TOOL_NAME} again with the corrected result."
NO_CALL = (f"Your previous answer did not call the {TOOL_NAME} tool. Call {TOOL_NAME} with the complete result; "
           "do not answer in text.")


@dataclass(frozen=True)
class Invalid:
    """One invalid item: where its judged (newest) answer sits in results.jsonl, and why it was rejected."""

    offset: int
    error: dict


_cache: dict[tuple, dict[str, Invalid]] = {}


def find_invalid(run_dir: Path) -> dict[str, Invalid]:
    """custom_id -> Invalid for every item merge would call `invalid` (results.jsonl read once per change)."""
    run_dir = Path(run_dir)
    path = run_dir / "results.jsonl"
    if not path.exists():
        return {}
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _cache:
        return _cache[key]
    view = open_view(run_dir)
    index = index_items(run_dir)
    ledger, _ = scan_results(path, index, None, str(view.manifest.get("mode") or "batch"))
    found: dict[str, Invalid] = {}
    with open(path, "rb") as fh:
        for custom_id, pos in index.items():
            if ledger.succ[pos] < 0:
                continue
            status, _, error, _ = outcome(pos, ledger, fh, view)
            if status == CATEGORY:
                # merge judges the newest success first; with none valid, its error is the one reported
                found[custom_id] = Invalid(ledger.succ[pos] & OFFSET_MASK, error)
    _cache.clear()
    _cache[key] = found
    return found


def select_invalid(run_dir: Path) -> dict[str, str]:
    """The retry selector for `--only invalid`: {custom_id: "invalid"}."""
    return {custom_id: CATEGORY for custom_id in find_invalid(run_dir)}


class Repairer:
    """(custom_id, original request line) -> the repaired request line, for a run's invalid items; `counts`
    tallies how each was repaired (`feedback`, `max_tokens`, `resend`)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.invalid = find_invalid(self.run_dir)
        self.style = output_style(open_run(self.run_dir))
        self.counts: Counter = Counter()

    def __call__(self, custom_id: str, line: bytes) -> bytes:
        item = self.invalid.get(custom_id)
        if item is None:
            return line
        with open(self.run_dir / "results.jsonl", "rb") as fh:
            fh.seek(item.offset)
            record = json.loads(fh.readline())
        request = json.loads(line)
        params, how = repair_params(request["params"], answer_of(record), item.error, self.style)
        self.counts[how] += 1
        return (dumps({"custom_id": custom_id, "params": params}) + "\n").encode("utf-8")


def answer_of(record: dict) -> dict:
    """The Messages response inside a result record ({} when an executor stored only an output)."""
    message = (record.get("result") or {}).get("message")
    if isinstance(message, str):
        return {"content": [{"type": "text", "text": message}]}
    return message if isinstance(message, dict) else {}


def repair_params(params: dict, answer: dict, error: dict, style: str) -> tuple[dict, str]:
    """(the follow-up request params, how: `feedback` · `max_tokens` · `resend`). Pure.

    `params` is the original request's, `answer` the rejected Messages response, `error` merge's `{type,
    message, details?}` for it, `style` the run's output style.
    """
    params = allowed_tool_choice(params)
    if answer.get("stop_reason") == "max_tokens":
        # whatever the verdict says about the fragment (no JSON, or a nested object that breaks the schema),
        # the answer was cut: more room, not feedback, is what fixes it
        return {**params, "max_tokens": raised_max_tokens(params, answer)}, "max_tokens"
    if error.get("type") not in FEEDBACK_TYPES:
        return params, "resend"
    turns = tool_turns(answer, error) if style == "tool" else text_turns(answer, error)
    if turns is None:
        return params, "resend"
    return {**params, "messages": [*params["messages"], *turns]}, "feedback"


def allowed_tool_choice(params: dict) -> dict:
    """`params` without a forced tool_choice when the model answers forced tool use with a 400 (the 5.5
    generation and Fable 5.1: https://platform.claude.com/docs/en/models/sonnet-5-5/whats-new-sonnet-5-5);
    the tool stays offered and the feedback asks for the call. Runs prepared before the model table knew
    this still carry the forced choice, so a re-ask must not resend it."""
    choice = params.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("tool", "any") and not accepts_forced_tool(str(params.get("model") or "")):
        return {**params, "tool_choice": {"type": "auto"}}
    return params


def raised_max_tokens(params: dict, answer: dict) -> int:
    """Twice the limit the answer ran into, at most the model's output limit."""
    used = (answer.get("usage") or {}).get("output_tokens")
    base = max(int(params.get("max_tokens") or 1), used if type(used) is int else 0)
    model = find_model(str(params.get("model") or ""))
    raised = base * MAX_TOKENS_FACTOR
    return min(raised, model.max_output) if model else raised


def feedback(error: dict, tail: str, whole: bool = True) -> str:
    """The validator's verdict, for the model: each schema error on its own line with its JSON path.
    `whole`: the answer was one JSON document (else the errors are about an object found inside it)."""
    details = error.get("details") or []
    if error.get("type") == "schema" and details:
        lines = "\n".join(f"- {d.get('path', '$')}: {d.get('message', '')}" for d in details)
        return f"{SCHEMA_LEAD if whole else FRAGMENT_LEAD}\n{lines}\n{tail}"
    return f"{OTHER_LEAD} {str(error.get('message') or error.get('type')).rstrip('.')}.\n{tail}"


def _blocks(answer: dict) -> list:
    content = answer.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def text_turns(answer: dict, error: dict) -> list[dict] | None:
    """json_schema and prompt styles: the answer's text as the assistant turn, the verdict as a user turn."""
    text = "".join(b.get("text") or "" for b in _blocks(answer) if b.get("type") == "text")
    if not text.strip():
        return None
    try:
        whole = isinstance(json.loads(text), dict)
    except ValueError:
        whole = False
    return [{"role": "assistant", "content": text},
            {"role": "user", "content": feedback(error, JSON_TAIL, whole)}]


def tool_turns(answer: dict, error: dict) -> list[dict] | None:
    """Tool style: the answer's text and tool calls as the assistant turn; every call answered by an error
    tool_result (the API requires one per tool_use id, first in the next user turn)."""
    assistant: list[dict] = []
    results: list[dict] = []
    for block in _blocks(answer):
        if block.get("type") == "text" and (block.get("text") or "").strip():
            assistant.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("input"), dict):
                return None  # not a call the API would take back (e.g. a gateway's string input)
            name = str(block.get("name"))
            assistant.append({"type": "tool_use", "id": block["id"], "name": name, "input": block["input"]})
            message = (feedback(error, TOOL_TAIL) if name == TOOL_NAME else
                       f"There is no tool named {name!r} here. Call {TOOL_NAME} with the complete result.")
            results.append({"type": "tool_result", "tool_use_id": block["id"], "is_error": True, "content": message})
    if not assistant:
        return None
    # no call at all: whatever JSON the text held is beside the point, the call is what is missing
    user: Any = results if results else NO_CALL
    return [{"role": "assistant", "content": assistant}, {"role": "user", "content": user}]
