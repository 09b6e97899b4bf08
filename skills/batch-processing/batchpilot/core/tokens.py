"""The local token estimator: what `plan`, `prepare` (cache eligibility) and the direct executor's budget count.

The emulator does not use it: it has its own tokenizer (`emulator/behaviour/tokenizer.py`), so a rehearsal's
billed usage measures this estimate rather than repeating it. The rule:

* text costs ``ceil(characters / 4)`` tokens (the usual rule of thumb for English and code), except that a
  CJK, kana or hangul character costs a token of its own (those scripts run about one token per character);
* a JSON value (a tool definition, a schema, a tool_use input) costs the tokens of its compact JSON text;
* every message adds ``MESSAGE_OVERHEAD`` tokens and every request ``REQUEST_OVERHEAD``;
* a request's counts are scaled by its model's tokenizer factor (1.3 for Claude Opus 4.7 and later and Haiku
  5.5, whose newer tokenizer counts about 30% more: `core.models.Model.tokenizer_factor`).

Measured against the emulator's independent tokenizer (tests/test_tokens.py), the estimate of a mixed
corpus (prose, code, JSON, CJK) stays within ESTIMATE_ERROR of the count, per model family.

The real API's counts differ by tokenizer; `plan --count-tokens` asks the API instead of this estimate.

Prompt caching needs to know where a prefix ends, so `request_segments` returns the request in the API's cache
order (tools → system → messages), block by block, each with its token count and cache breakpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator

from batchpilot.core.models import tokenizer_factor

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 3
REQUEST_OVERHEAD = 7
ESTIMATE_ERROR = 0.25  # the stated error of a request's input estimate (a fraction, either way)
WIDE = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


def estimate_text(text: str) -> int:
    """Tokens of one piece of text: ceil(len / 4), wide (CJK) characters one each; 0 for the empty string."""
    wide = 0 if text.isascii() else len(WIDE.findall(text))
    return wide + (len(text) - wide + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_json(value: Any) -> int:
    """Tokens of a JSON value, counted on its compact serialisation."""
    return estimate_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True))


@dataclass(frozen=True)
class Segment:
    """One block of a request in cache order: its tokens, its text (for cache keys), and its breakpoint TTL."""

    tokens: int
    text: str
    cache_ttl: str | None  # "5m", "1h" or None when the block carries no cache_control


def _ttl(block: Any) -> str | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return str(block["cache_control"].get("ttl") or "5m")
    return None


def block_text(block: Any) -> str:
    """The text of one content block (a string, or a text/tool block), for counting and matching."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return json.dumps(block, sort_keys=True, default=str)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return json.dumps(block.get("input", {}), separators=(",", ":"), sort_keys=True, default=str)
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return "".join(block_text(b) for b in content)
        return str(content)
    if kind in ("document", "image"):
        # An attachment is priced by its pages or pixels (`plan` adds them; prepare.media), never by the
        # length of its base64 string: here it is only a short stable tag, for cache keys.
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        ident = source.get("file_id") or hashlib.sha1(str(source.get("data", "")).encode()).hexdigest()[:16]
        return f"[{kind} {source.get('media_type', '')} {ident}]"
    if kind in ("thinking", "redacted_thinking"):
        return str(block.get("thinking", block.get("data", "")))
    return json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True, default=str)


def request_segments(params: dict) -> Iterator[Segment]:
    """Yield the request's blocks in the API's cache order: tools, system, then each message's blocks,
    counted for the request's model (its tokenizer factor applied)."""
    factor = tokenizer_factor(str(params.get("model") or ""))
    for seg in _raw_segments(params):
        yield Segment(math.ceil(seg.tokens * factor), seg.text, seg.cache_ttl) if factor != 1 else seg


def _raw_segments(params: dict) -> Iterator[Segment]:
    for tool in params.get("tools") or []:
        if isinstance(tool, dict):
            body = {k: v for k, v in tool.items() if k != "cache_control"}
            text = json.dumps(body, separators=(",", ":"), sort_keys=True, default=str)
            yield Segment(estimate_text(text), text, _ttl(tool))
    output_format = (params.get("output_config") or {}).get("format") if isinstance(params.get("output_config"), dict) else None
    if output_format:
        text = json.dumps(output_format, separators=(",", ":"), sort_keys=True, default=str)
        yield Segment(estimate_text(text), text, None)
    system = params.get("system")
    if isinstance(system, str) and system:
        yield Segment(estimate_text(system), system, None)
    elif isinstance(system, list):
        for block in system:
            text = block_text(block)
            yield Segment(estimate_text(text), text, _ttl(block))
    for message in params.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content", "")
        role = str(message.get("role", ""))
        blocks = [content] if isinstance(content, str) else (content if isinstance(content, list) else [])
        for i, block in enumerate(blocks):
            text = block_text(block)
            overhead = MESSAGE_OVERHEAD if i == 0 else 0
            yield Segment(estimate_text(text) + overhead, role + ":" + text, _ttl(block))


def estimate_input_tokens(params: dict) -> int:
    """All input tokens of a Messages request (what count_tokens answers), cache or not."""
    return REQUEST_OVERHEAD + sum(s.tokens for s in request_segments(params))
