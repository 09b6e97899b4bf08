"""Extraction: one succeeded result → the JSON object(s) the model answered with. Pure; no I/O.

Where the answer lives depends on the request's structured-output style (run.json `output_style`):

* `json_schema` — the text of the answer *is* the JSON document;
* `tool` — the `input` of the forced `emit_result` tool call;
* `prompt` — a JSON object somewhere in the text: bare, in a ```json fence, or with prose around it.

Agents and headless executors may instead hand over the already-parsed object as `result.output` (or
`result.message.output`), which wins over everything else.

The answer can also be unusable before any schema is consulted: a refusal, an empty content list, a JSON
document cut off at `max_tokens`, a call to some other tool. Those become an `error` with a type and a
message that tells a user what happened and what to do. Validation against the schema is the caller's job
(`batchpilot.results.validate`); when the text holds several objects, all are returned so the caller can take the
first that validates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from batchpilot.prepare.build import TOOL_NAME

MAX_CANDIDATES = 5
MAX_FAILED_DECODES = 200  # bounds the scan of a long prose answer full of braces
SNIPPET = 80
FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_decoder = json.JSONDecoder()


@dataclass
class Extraction:
    """What an answer holds: candidate objects (in order of appearance), or an error `{type, message}`."""

    candidates: list[dict] = field(default_factory=list)
    error: dict | None = None
    stop_reason: str | None = None


def _error(kind: str, message: str, stop_reason: str | None = None) -> Extraction:
    return Extraction([], {"type": kind, "message": message}, stop_reason)


def snippet(text: str, limit: int = SNIPPET) -> str:
    """The start of a text on one line, for messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def find_json_objects(text: str) -> tuple[list[dict], str | None]:
    """JSON objects in `text`, best first, and the type name of a non-object document if that is all there is.

    Order of trust: the whole text as one document; then fenced blocks (```json first); then any `{` that
    starts a complete object, scanning left to right (prose before and after is ignored).
    """
    stripped = text.strip()
    if not stripped:
        return [], None
    try:
        whole = json.loads(stripped)
    except ValueError:
        pass
    else:
        if isinstance(whole, dict):
            return [whole], None
        return [], json_type(whole)
    found: list[dict] = []

    def add(value: Any) -> None:
        if isinstance(value, dict) and value not in found and len(found) < MAX_CANDIDATES:
            found.append(value)

    fences = sorted(FENCE_RE.finditer(text), key=lambda m: m.group(1).lower() != "json")
    for match in fences:
        try:
            add(json.loads(match.group(2)))
        except ValueError:
            continue
    failures, start = 0, text.find("{")
    while start != -1 and len(found) < MAX_CANDIDATES and failures < MAX_FAILED_DECODES:
        try:
            value, end = _decoder.raw_decode(text, start)
        except ValueError:
            failures += 1
            start = text.find("{", start + 1)
            continue
        add(value)
        start = text.find("{", end)
    return found, None


def _text_of(content: list) -> str:
    return "".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")


def _from_text(text: str, stop_reason: str | None, max_tokens_hint: str) -> Extraction:
    candidates, other = find_json_objects(text)
    if candidates:
        return Extraction(candidates, None, stop_reason)
    if stop_reason == "max_tokens":
        return _error("truncated", f"the answer was cut off at max_tokens before its JSON was complete; {max_tokens_hint}",
                      stop_reason)
    if other is not None:
        return _error("not_object", f"the answer is {other}, not a JSON object: {snippet(text)!r}", stop_reason)
    if not text.strip():
        return _error("empty", f"the answer has no text (stop_reason {stop_reason}); retry the item", stop_reason)
    return _error("no_json", f"the answer holds no complete JSON object: {snippet(text)!r}", stop_reason)


def extract_output(result: dict, style: str, tool_name: str = TOOL_NAME) -> Extraction:
    """The candidate outputs of one `succeeded` result (`record["result"]`) for a structured-output style."""
    hint = "raise max_tokens (the template's max_tokens or --max-tokens) and retry the item"
    if "output" in result:
        return _from_output(result["output"])
    message = result.get("message")
    if isinstance(message, str):  # lenient: an executor that stored the bare answer text
        return _from_text(message, None, hint)
    if not isinstance(message, dict):
        return _error("empty", "the result says succeeded but carries no message and no output")
    if "output" in message:
        return _from_output(message["output"])
    stop = message.get("stop_reason")
    if stop == "refusal":
        details = message.get("stop_details") or {}
        why = details.get("explanation") or details.get("category") if isinstance(details, dict) else None
        reason = f": {snippet(str(why), 200).rstrip('.')}" if why else ""
        return _error("refusal", f"the model declined to answer (stop_reason refusal){reason}; "
                                 "review the item, or rephrase the template's instructions", stop)
    if stop == "pause_turn":
        return _error("incomplete", "the answer paused mid-turn (stop_reason pause_turn) and never finished; retry the item", stop)
    if stop == "model_context_window_exceeded":
        return _error("truncated", "the answer hit the model's context window before its JSON was complete; "
                                   "shorten the item or split it", stop)
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not content or not isinstance(content, list):
        if stop == "max_tokens":
            return _error("truncated", f"the answer was cut off at max_tokens before any content; {hint}", stop)
        return _error("empty", f"the answer's content is empty (stop_reason {stop}); retry the item", stop)
    calls = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
    ours = [b for b in calls if b.get("name") == tool_name]
    if ours:
        value = ours[0].get("input")
        if isinstance(value, dict):
            return Extraction([value], None, stop)
        if isinstance(value, str):  # some gateways pass tool input through as a JSON string
            return _from_text(value, stop, hint)
        return _error("not_object", f"the {tool_name} call's input is {json_type(value)}, not a JSON object", stop)
    text = _text_of(content)
    if style == "tool" and calls:
        names = ", ".join(sorted({str(b.get("name")) for b in calls}))
        return _error("wrong_tool", f"the model called the tool {names!r} instead of {tool_name!r}", stop)
    found = _from_text(text, stop, hint)
    if style == "tool" and found.error and found.error["type"] in ("empty", "no_json"):
        said = f": {snippet(text)!r}" if text.strip() else ""
        return _error("no_tool_call", f"the answer has no {tool_name} tool call (stop_reason {stop}){said}", stop)
    return found


def _from_output(value: Any) -> Extraction:
    if isinstance(value, dict):
        return Extraction([value], None, None)
    if isinstance(value, str):
        return _from_text(value, None, "retry the item")
    return _error("not_object", f"the output is {json_type(value)}, not a JSON object")


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {"str": "a string", "list": "an array", "dict": "an object"}.get(type(value).__name__, type(value).__name__)
