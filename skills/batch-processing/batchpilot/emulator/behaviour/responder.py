"""The deterministic "model": what a request gets back, as content blocks and a stop reason.

* `output_config.format` of type json_schema (or the older top-level `output_format`) → one text block
  holding JSON that validates against the schema;
* a forced tool (`tool_choice: {type: tool, name}`, or `any`) → a tool_use block whose input validates
  against that tool's `input_schema`;
* tools that include `StructuredOutput` (the Claude Code CLI's `--json-schema` tool) → a tool_use of it;
* anything else → a few sentences of text.

A review of a change (a diff in the message) cites the change's lines (`batchpilot.emulator.behaviour.review`).

Answers are a pure function of (seed, request): the request is hashed on its canonical JSON without
`stream` and `metadata`, so a streamed and a plain call of the same request agree. Output longer than
`max_tokens` is cut and stops with `max_tokens`, like the real API. Faults (`invalid_json`, `truncate`,
`refusal`) and scenario replies are applied here too, so every path builds content the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from batchpilot.emulator.behaviour.review import aim_at_change
from batchpilot.emulator.behaviour.scenario import tool_calls
from batchpilot.emulator.behaviour.schemagen import VERBOSITY, example
from batchpilot.emulator.behaviour.tokenizer import block_text, count_text

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
SENTENCES = (
    "This is an emulated answer.",
    "The emulator produced it deterministically from the request.",
    "No model was called and nothing left this machine.",
    "Same seed and same request give the same words.",
    "Token counts come from the emulator's own tokenizer.",
    "Use a scenario to script a specific reply.",
)
REFUSAL_TEXT = "I can't help with that request."


@dataclass
class Answer:
    """The model's turn: content blocks, stop reason, optional stop details, and output tokens."""

    content: list[dict] = field(default_factory=list)
    stop_reason: str = "end_turn"
    stop_details: dict | None = None
    model: str = ""  # whose tokenizer counts the output

    @property
    def output_tokens(self) -> int:
        total = sum(count_text(block_text(b), self.model) for b in self.content if b["type"] in ("text", "tool_use"))
        return max(total, 1)


def request_key(params: dict, seed: int) -> str:
    """A hex digest naming this request's content (and the seed)."""
    body = {k: v for k, v in params.items() if k not in ("stream", "metadata")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(f"{seed}\x1f{text}".encode(), digest_size=12).hexdigest()


def make_id(prefix: str, key: str) -> str:
    """An id in the API's style (`msg_01…`, `toolu_01…`): 24 characters after the prefix."""
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(digest, "big")
    chars = []
    for _ in range(22):
        n, r = divmod(n, len(alphabet))
        chars.append(alphabet[r])
    return f"{prefix}_01{''.join(chars)}"


def structured_target(params: dict) -> tuple[str, str | None, Any] | None:
    """("json", None, schema) | ("tool", name, schema) | None for a plain text answer."""
    config = params.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    fmt = fmt or params.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return ("json", None, fmt.get("schema") or {})
    tools = [t for t in params.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    by_name = {t["name"]: t for t in tools}
    choice = params.get("tool_choice") if isinstance(params.get("tool_choice"), dict) else {}
    if choice.get("type") == "none":
        return None
    if choice.get("type") == "tool" and choice.get("name") in by_name:
        tool = by_name[choice["name"]]
        return ("tool", tool["name"], tool.get("input_schema") or {})
    if choice.get("type") == "any" and tools:
        return ("tool", tools[0]["name"], tools[0].get("input_schema") or {})
    if STRUCTURED_OUTPUT_TOOL in by_name:
        return ("tool", STRUCTURED_OUTPUT_TOOL, by_name[STRUCTURED_OUTPUT_TOOL].get("input_schema") or {})
    return None


def verbosity(params: dict, key: str) -> float:
    """How much this request's answer says: more for a longer item (square root of its length against 2,000
    characters, within 0.5-2.5), times 0.6-1.4 from the request's hash."""
    messages = params.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content", "")
    length = len(content) if isinstance(content, str) else sum(len(block_text(b)) for b in content if isinstance(content, list))
    return min(max((length / 2000) ** 0.5, 0.5), 2.5) * (0.6 + (int(key[8:12], 16) % 801) / 1000)


def _text_for(key: str) -> str:
    n = int(key[:8], 16)
    count = 2 + n % 4
    return " ".join(SENTENCES[(n // 7 + i) % len(SENTENCES)] for i in range(count))


def answer(params: dict, key: str, fault: str | None = None, scripted: dict | None = None) -> Answer:
    """The answer to `params` (`key` from `request_key`), bent by a fault kind or replaced by a scenario reply."""
    max_tokens = params.get("max_tokens") if isinstance(params.get("max_tokens"), int) else 4096
    if fault == "refusal":
        return Answer([{"type": "text", "text": REFUSAL_TEXT}], "refusal",
                      {"type": "refusal", "category": None, "explanation": "Emulated refusal (fault injection)."})
    if scripted is not None:
        result = _scripted(scripted, key)
    else:
        result = _default(params, key)
    model = str(params.get("model") or "")
    result.model = model
    if fault == "invalid_json":
        result = _broken_json(result)
    elif fault == "truncate":
        result = _truncated(result, None)
    result.model = model
    if result.stop_reason != "max_tokens" and result.output_tokens > max(max_tokens, 1):
        result = _truncated(result, max_tokens)
    result.model = model
    return result


def _default(params: dict, key: str) -> Answer:
    target = structured_target(params)
    if target is None:
        return Answer([{"type": "text", "text": _text_for(key)}])
    kind, name, schema = target
    token = VERBOSITY.set(verbosity(params, key))
    try:
        value = aim_at_change(example(schema, key), params)
    finally:
        VERBOSITY.reset(token)
    if kind == "json":
        return Answer([{"type": "text", "text": json.dumps(value, ensure_ascii=False)}])
    block = {"type": "tool_use", "id": make_id("toolu", key), "name": name, "input": value}
    return Answer([block], "tool_use")


def _scripted(reply: dict, key: str) -> Answer:
    content: list[dict] = []
    if reply.get("text") is not None:
        content.append({"type": "text", "text": str(reply["text"])})
    tools = tool_calls(reply)
    for n, tool in enumerate(tools):
        # Ids must differ between calls of one message (the client pairs each tool_result with its call);
        # the first keeps the single-call form's id.
        seed = key + tool["name"] + (f"/{n}" if n else "")
        content.append({"type": "tool_use", "id": make_id("toolu", seed), "name": tool["name"],
                        "input": tool.get("input") or {}})
    stop = reply.get("stop_reason") or ("tool_use" if tools else "end_turn")
    return Answer(content or [{"type": "text", "text": ""}], stop)


def _as_text(result: Answer) -> str:
    parts = []
    for block in result.content:
        parts.append(block["text"] if block["type"] == "text" else json.dumps(block["input"], ensure_ascii=False))
    return "".join(parts)


def _broken_json(result: Answer) -> Answer:
    # What a confused model does: prose around a JSON object that is missing its end.
    text = _as_text(result)
    return Answer([{"type": "text", "text": "Here is the result: " + text[: max(len(text) - 1, 1)] + " ..."}])


def _truncated(result: Answer, max_tokens: int | None) -> Answer:
    text = _as_text(result)
    if max_tokens is None:
        return Answer([{"type": "text", "text": text[: max(len(text) // 2, 1)]}], "max_tokens")
    # Cut where the count fits: scale by the text's own characters per token, then trim until it does.
    cut = max(1, len(text) * max_tokens // max(count_text(text, result.model), 1))
    while cut > 1 and count_text(text[:cut], result.model) > max_tokens:
        cut = max(1, cut * 9 // 10)
    return Answer([{"type": "text", "text": text[:cut]}], "max_tokens", model=result.model)
