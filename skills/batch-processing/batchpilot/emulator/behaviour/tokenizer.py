"""The emulator's own token counter: what its usage, count_tokens and cache accounting report.

It is deliberately independent of the client's estimator (`batchpilot.core.tokens`, characters / 4), so a
rehearsal's estimate-vs-billed figure measures something. It is a byte-pair-style count, deterministic and
sensitive to what the text is:

* a run of ASCII letters (with the space before it, as BPE merges it) is one token up to 7 letters, one more
  for every 4 letters beyond (common words are single tokens, long identifiers split);
* digits cost one token per 3; punctuation and symbols cost one token per pair (`):`, `":`, `()` merge;
  code and JSON are symbol-dense, so they cost more per character than prose);
* a newline with the indentation after it is one token, plus one per 8 columns beyond the first 8; other
  runs of spaces or tabs cost one per 4;
* a CJK, kana or hangul character is a token of its own; any other non-ASCII character costs half a token
  per UTF-8 byte, rounded up per run.

Model families differ: Claude Opus 4.7 and later, the 5 generations and Haiku 5.5 use the newer tokenizer,
which counts the same text as about 30% more tokens than Haiku 4.5
(https://platform.claude.com/docs/en/models/haiku-5-5/overview), so their counts are 1.3x the older
family's. A request adds REQUEST_OVERHEAD tokens and each message MESSAGE_OVERHEAD (the role markers). A
document or image block counts nothing here: it is billed by its pages or pixels (`behaviour.media`).

`request_segments` walks a request in the API's cache order (tools → output format → system → messages),
block by block, each with its count, its text (for cache keys) and its cache breakpoint TTL.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator

REQUEST_OVERHEAD = 5
MESSAGE_OVERHEAD = 4
NEWER_FACTOR = 1.3
OLDER_FAMILY = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-6", "claude-opus-4-5", "claude-opus-4-6",
                "claude-opus-4-1", "claude-opus-4-0", "claude-sonnet-4-0", "claude-3")
_PIECES = re.compile(
    r" ?[A-Za-z]+|[0-9]+|\n[ \t]*|[ \t]{2,}|[ \t]|[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]"
    r"|[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]{1,2}|[^\x00-\x7f]+"
)


def family(model: str) -> str:
    """"older" or "newer": which tokenizer `model` uses (unknown ids get the newer one, like new models)."""
    return "older" if any(model.startswith(prefix) for prefix in OLDER_FAMILY) else "newer"


def _older_count(text: str) -> int:
    total = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first == " " and len(piece) > 1 and piece[1].isalpha() or first.isascii() and first.isalpha():
            letters = len(piece.strip())
            total += 1 + max(0, letters - 4) // 4
        elif first.isdigit():
            total += math.ceil(len(piece) / 3)
        elif first == "\n":
            total += 1 + max(0, len(piece) - 9) // 8
        elif first in " \t":
            total += 1 if len(piece) == 1 else math.ceil(len(piece) / 4)
        elif first.isascii():
            total += 1  # one or two punctuation or symbol characters
        elif len(piece) == 1 and "\u3000" <= first <= "\uffef":
            total += 1
        else:
            total += math.ceil(len(piece.encode("utf-8")) / 2)
    return total


ATTACHMENT_TYPES = ("document", "image")


def count_text(text: str, model: str) -> int:
    """Tokens of `text` for `model`'s tokenizer family."""
    base = _older_count(text)
    return base if family(model) == "older" else math.ceil(base * NEWER_FACTOR)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def block_text(block: Any) -> str:
    """The text of one content block (a string, or a text/tool/thinking block)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return _compact(block)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return _compact(block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content", "")
        return "".join(block_text(b) for b in content) if isinstance(content, list) else str(content)
    if kind in ("thinking", "redacted_thinking"):
        return str(block.get("thinking", block.get("data", "")))
    return _compact({k: v for k, v in block.items() if k != "cache_control"})


@dataclass(frozen=True)
class Segment:
    tokens: int
    text: str
    cache_ttl: str | None


def _ttl(block: Any) -> str | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return str(block["cache_control"].get("ttl") or "5m")
    return None


def request_segments(params: dict) -> Iterator[Segment]:
    """The request's blocks in cache order, counted with the model's tokenizer."""
    model = params.get("model") if isinstance(params.get("model"), str) else ""
    for tool in params.get("tools") or []:
        if isinstance(tool, dict):
            text = _compact({k: v for k, v in tool.items() if k != "cache_control"})
            yield Segment(count_text(text, model), text, _ttl(tool))
    config = params.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt:
        text = _compact(fmt)
        yield Segment(count_text(text, model), text, None)
    system = params.get("system")
    if isinstance(system, str) and system:
        yield Segment(count_text(system, model), system, None)
    elif isinstance(system, list):
        for block in system:
            text = block_text(block)
            yield Segment(count_text(text, model), text, _ttl(block))
    for message in params.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content", "")
        role = str(message.get("role", ""))
        blocks = [content] if isinstance(content, str) else (content if isinstance(content, list) else [])
        for i, block in enumerate(blocks):
            text = block_text(block)
            # A document or image is billed by its pages or pixels (behaviour.media.media_tokens, added by the
            # routes), never by the characters of its base64: its text here only keys the cache.
            attachment = isinstance(block, dict) and block.get("type") in ATTACHMENT_TYPES
            tokens = 0 if attachment else count_text(text, model)
            yield Segment(tokens + (MESSAGE_OVERHEAD if i == 0 else 0), role + ":" + text, _ttl(block))


def input_tokens(params: dict) -> int:
    """All input tokens of a Messages request: what count_tokens answers and usage bills, cache or not."""
    return REQUEST_OVERHEAD + sum(s.tokens for s in request_segments(params))
