"""Message objects and their SSE form: what POST /v1/messages returns and a batch `succeeded` line carries.

The streamed form follows the API's event order — message_start (empty content, stop_reason null),
per block content_block_start / content_block_delta… / content_block_stop (text as `text_delta` pieces,
tool input as `input_json_delta` pieces), message_delta (stop_reason and output usage), message_stop —
each frame an `event:` line, a `data:` line and a blank line, which is what the SDKs and the Claude Code
CLI parse.
"""

from __future__ import annotations

import json

from batchpilot.emulator.state.cache import CacheUsage
from batchpilot.emulator.behaviour.responder import Answer

DELTA_CHARS = 24  # characters per streamed delta: several deltas per block, as a real stream has


def build_message(msg_id: str, model: str, answer: Answer, cache: CacheUsage, service_tier: str) -> dict:
    usage = cache.as_usage()
    usage.update({
        "output_tokens": answer.output_tokens,
        "server_tool_use": None,
        "service_tier": service_tier,
        "inference_geo": "not_available",
    })
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": answer.content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "stop_details": answer.stop_details,
        "container": None,
        "usage": usage,
    }


def _frame(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def _pieces(text: str) -> list[str]:
    return [text[i:i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]


def sse_body(message: dict) -> bytes:
    """The whole event stream of `message`, ready to send."""
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, stop_sequence=None, stop_details=None,
                 usage=dict(usage, output_tokens=1))
    frames = [_frame("message_start", {"type": "message_start", "message": start}), _frame("ping", {"type": "ping"})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = dict(block, input={})
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _pieces(json.dumps(block["input"], ensure_ascii=False))]
        else:
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block.get("text", ""))]
        frames.append(_frame("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": opening}))
        for delta in deltas:
            frames.append(_frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        frames.append(_frame("content_block_stop", {"type": "content_block_stop", "index": index}))
    frames.append(_frame("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None, "stop_details": message["stop_details"]},
        "usage": {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
        },
    }))
    frames.append(_frame("message_stop", {"type": "message_stop"}))
    return "".join(frames).encode("utf-8")
