"""Checks on a Messages request body: the 400/404 of POST /v1/messages, the `errored` line of a batch request.

Strict where the real API is strict (required fields, types, the model's output ceiling, unknown models,
`stream` or `speed` inside a batch, sampling parameters under API version 2026-10-21), lenient where real
clients send extras: unknown keys, `role: "system"` messages (the Claude Code CLI sends one), any
`anthropic-beta`. Forced tool use (`tool_choice` of type `tool` or `any`) is refused on the models whose
docs say it "returns an error" (FORCED_TOOL_REFUSED, the emulator's own list, so it can disagree with the
client's model table). Messages use pydantic-style paths (`messages.0.role: ...`) like the real API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchpilot.core.models import find_model

UNKNOWN_MODEL_MAX_OUTPUT = 128_000
SAMPLING_KEYS = ("temperature", "top_p", "top_k")
NEW_VERSION = "2026-10-21"
# https://platform.claude.com/docs/en/models/sonnet-5-5/whats-new-sonnet-5-5 ("Forced tool use returns an
# error"), https://platform.claude.com/docs/en/models/opus-5-5/overview (Opus 5.5, and Fable 5.1 likewise).
FORCED_TOOL_REFUSED = ("claude-sonnet-5-5", "claude-opus-5-5", "claude-fable-5-1")
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Problem:
    """Why a request is refused: HTTP status, API error type, message."""

    status: int
    type: str
    message: str


def _bad(message: str) -> Problem:
    return Problem(400, "invalid_request_error", message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_params(params: object, *, in_batch: bool, allow_unknown_models: bool, version: str | None = None,
                 counting: bool = False) -> Problem | None:
    """The first problem with this Messages body, or None. `counting`: count_tokens (no max_tokens needed)."""
    if not isinstance(params, dict):
        return _bad("Input should be a valid dictionary or object to extract fields from")
    model = params.get("model")
    if "model" not in params:
        return _bad("model: Field required")
    if not isinstance(model, str) or not model:
        return _bad("model: Input should be a valid string")
    if not counting:
        if "max_tokens" not in params:
            return _bad("max_tokens: Field required")
        if not _is_int(params["max_tokens"]):
            return _bad("max_tokens: Input should be a valid integer")
        if params["max_tokens"] < (1 if in_batch else 0):
            return _bad(f"max_tokens: Input should be greater than or equal to {1 if in_batch else 0}")
    if "messages" not in params:
        return _bad("messages: Field required")
    messages = params["messages"]
    if not isinstance(messages, list):
        return _bad("messages: Input should be a valid list")
    if not messages:
        return _bad("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return _bad(f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant", "system"):
            return _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            return _bad(f"messages.{i}.content: Field required")
        if not isinstance(message["content"], (str, list)):
            return _bad(f"messages.{i}.content: Input should be a valid string or list")
        if isinstance(message["content"], list):
            for j, block in enumerate(message["content"]):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    return _bad(f"messages.{i}.content.{j}: Input should be a valid content block")
    system = params.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return _bad("system: Input should be a valid string or list")
    tools = params.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return _bad("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return _bad(f"tools.{i}.name: Field required")
    for key in ("tool_choice", "output_config", "thinking", "metadata"):
        if params.get(key) is not None and not isinstance(params[key], dict):
            return _bad(f"{key}: Input should be a valid dictionary")
    if in_batch:
        if params.get("stream"):
            return _bad("stream: streaming is not supported in the Message Batches API")
        if params.get("speed") is not None:
            return _bad("speed: fast mode is not supported in the Message Batches API")
    if version == NEW_VERSION:
        for key in SAMPLING_KEYS:
            if key in params:
                return _bad(f"{key}: Extra inputs are not permitted in API version {NEW_VERSION}")
    choice = params.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("tool", "any") and refuses_forced_tool(model):
        return _bad(f"tool_choice: forced tool use (type {choice.get('type')!r}) is not supported with {model}; "
                    "use tool_choice type 'auto' or 'none'")
    known = find_model(model)
    if known is None and not allow_unknown_models:
        return Problem(404, "not_found_error", f"model: {model}")
    if not counting:
        ceiling = known.max_output if known else UNKNOWN_MODEL_MAX_OUTPUT
        if params["max_tokens"] > ceiling:
            return _bad(f"max_tokens: {params['max_tokens']} > {ceiling}, which is the maximum allowed number "
                        f"of output tokens for {model}")
    return None


def refuses_forced_tool(model: str) -> bool:
    """Whether `model` (or a dated snapshot of it) answers forced tool use with a 400."""
    return any(model == m or (model.startswith(m + "-") and model[len(m) + 1:].isdigit()) for m in FORCED_TOOL_REFUSED)


def check_custom_id(value: object, index: int) -> str | None:
    """The create-time complaint about one custom_id, or None."""
    where = f"requests.{index}.custom_id"
    if not isinstance(value, str):
        return f"{where}: Input should be a valid string"
    if len(value) < 1:
        return f"{where}: String should have at least 1 character"
    if len(value) > 64:
        return f"{where}: String should have at most 64 characters"
    if not CUSTOM_ID.match(value):
        return f"{where}: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
    return None
