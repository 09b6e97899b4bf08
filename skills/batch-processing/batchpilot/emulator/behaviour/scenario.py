"""Scenario mode: a test scripts the "model" as a list of steps; each Messages request gets the reply of the
first step whose condition matches it.

A step (JSON file or Python list of dicts):

    {"when":  {"contains": "needle",            # text anywhere in system or messages
               "not_contains": "needle",        # text nowhere in system or messages
               "last_user_contains": "needle",  # text in the last user turn
               "tool": "StructuredOutput",      # a tool the request offers, by name
               "turn": "prompt"},               # the last user turn's kind: prompt | tool_result | enforce
     "reply": {"text": "..."}                   # a text answer
           or {"tool_use": {"name": "Read", "input": {"file_path": "a.txt"}}}   # a tool call (text may join it)
           or {"tool_uses": [{"name": "Agent", "input": {...}}, ...]}   # several tool calls in one message
           or {"error": {"status": 529, "type": "overloaded_error", "message": "..."}},
     "once": true}                              # used by the first match only

All `when` keys must hold (an empty `when` matches everything); `contains`, `not_contains` and
`last_user_contains` also take a list (every text must be there, or none of them). `enforce` is the Claude Code CLI's
`[structured-output-enforce]` reminder. Requests that no step matches fall back to the deterministic
responder. Scenarios apply to POST /v1/messages only (batch results are recomputed on every download, so
they stay a pure function of the request).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from batchpilot.emulator.behaviour.tokenizer import block_text

ENFORCE_MARK = "[structured-output-enforce]"
TURNS = ("prompt", "tool_result", "enforce")
WHEN_KEYS = ("contains", "not_contains", "last_user_contains", "tool", "turn")
REPLY_KEYS = ("text", "tool_use", "tool_uses", "error")


@dataclass
class Step:
    """One scripted step: a condition (`when`), an answer (`reply`), and whether it is used up after one match."""

    when: dict[str, Any]
    reply: dict[str, Any]
    once: bool = False
    used: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.when, dict) or set(self.when) - set(WHEN_KEYS):
            raise ValueError(f"scenario step when={self.when!r}: keys may be {', '.join(WHEN_KEYS)}")
        if self.when.get("turn") not in (None, *TURNS):
            raise ValueError(f"scenario step turn={self.when['turn']!r}: use prompt, tool_result or enforce")
        for key in ("contains", "not_contains", "last_user_contains"):
            if key in self.when and not all(isinstance(t, str) for t in _texts(self.when[key])):
                raise ValueError(f"scenario step {key}={self.when[key]!r}: a string or a list of strings")
        if not isinstance(self.reply, dict) or not (set(REPLY_KEYS) & set(self.reply)):
            raise ValueError(f"scenario step reply={self.reply!r}: needs text, tool_use, tool_uses or error")
        if "tool_use" in self.reply and "tool_uses" in self.reply:
            raise ValueError("scenario step reply: give tool_use (one call) or tool_uses (a list), not both")
        tools = self.reply.get("tool_uses")
        if tools is not None and not (isinstance(tools, list) and tools):
            raise ValueError(f"scenario step tool_uses={tools!r}: needs a non-empty list of {{name, input}}")
        for tool in tool_calls(self.reply):
            if not (isinstance(tool, dict) and isinstance(tool.get("name"), str)):
                raise ValueError(f"scenario step tool_use={tool!r}: needs a name (and an input object)")
            if not isinstance(tool.get("input", {}), dict):
                raise ValueError(f"scenario step tool_use={tool!r}: input must be an object")
        error = self.reply.get("error")
        if error is not None and not (isinstance(error, dict) and isinstance(error.get("status"), int)):
            raise ValueError(f"scenario step error={error!r}: needs an integer status and a type")

    def matches(self, params: dict) -> bool:
        when = self.when
        if "contains" in when or "not_contains" in when:
            text = all_text(params)
            if not all(t in text for t in _texts(when.get("contains"))):
                return False
            if any(t in text for t in _texts(when.get("not_contains"))):
                return False
        if "last_user_contains" in when:
            text = last_user_text(params)
            if not all(t in text for t in _texts(when["last_user_contains"])):
                return False
        if "tool" in when and when["tool"] not in tool_names(params):
            return False
        if "turn" in when and when["turn"] != last_turn_kind(params):
            return False
        return True


def tool_calls(reply: dict) -> list:
    """The tool calls a reply makes, in order: its `tool_uses` list, or its single `tool_use`, or none."""
    if reply.get("tool_uses") is not None:
        return list(reply["tool_uses"]) if isinstance(reply["tool_uses"], list) else [reply["tool_uses"]]
    return [reply["tool_use"]] if reply.get("tool_use") is not None else []


def _texts(value: Any) -> list:
    return [] if value is None else (list(value) if isinstance(value, list) else [value])


def load_steps(raw: Any) -> list[Step]:
    """Steps from a JSON value: a list of step objects (or `{"steps": [...]}`)."""
    if isinstance(raw, dict) and "steps" in raw:
        raw = raw["steps"]
    if not isinstance(raw, list):
        raise ValueError("a scenario is a list of steps")
    steps = []
    for item in raw:
        if isinstance(item, Step):
            steps.append(item)
        elif isinstance(item, dict):
            steps.append(Step(when=item.get("when") or {}, reply=item.get("reply"), once=bool(item.get("once"))))
        else:
            raise ValueError(f"scenario step {item!r} is not an object")
    return steps


class Scenario:
    """The steps in order; `answer` picks the first unused match and marks once-only steps used."""

    def __init__(self, steps: list[Step]):
        self.steps = steps
        self._lock = threading.Lock()

    def answer(self, params: dict) -> dict | None:
        """The reply of the first unused step that matches, or None."""
        return self.pick(params)[1]

    def pick(self, params: dict) -> tuple[int | None, dict | None]:
        """(index of the first unused step that matches, its reply), or (None, None)."""
        if not self.steps:
            return None, None
        with self._lock:
            for index, step in enumerate(self.steps):
                if step.used or not step.matches(params):
                    continue
                if step.once:
                    step.used = True
                return index, step.reply
        return None, None

    def reset(self) -> None:
        with self._lock:
            for step in self.steps:
                step.used = False


def _messages(params: dict) -> list[dict]:
    messages = params.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _blocks(content: Any) -> list:
    return [content] if isinstance(content, str) else (content if isinstance(content, list) else [])


def all_text(params: dict) -> str:
    parts = [block_text(b) for b in _blocks(params.get("system"))]
    for message in _messages(params):
        parts += [block_text(b) for b in _blocks(message.get("content"))]
    return "\n".join(parts)


def _last_user(params: dict) -> dict | None:
    # The Claude Code CLI may append a role "system" message after the prompt: skip non-user turns.
    for message in reversed(_messages(params)):
        if message.get("role") == "user":
            return message
    return None


def last_user_text(params: dict) -> str:
    message = _last_user(params)
    return "\n".join(block_text(b) for b in _blocks(message.get("content"))) if message else ""


def last_turn_kind(params: dict) -> str:
    """prompt, tool_result (the turn returns a tool's output) or enforce (the CLI's structured-output nudge)."""
    message = _last_user(params)
    if message is None:
        return "prompt"
    blocks = _blocks(message.get("content"))
    if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
        return "tool_result"
    if ENFORCE_MARK in last_user_text(params):
        return "enforce"
    return "prompt"


def tool_names(params: dict) -> list[str]:
    tools = params.get("tools")
    if not isinstance(tools, list):
        return []
    return [t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
