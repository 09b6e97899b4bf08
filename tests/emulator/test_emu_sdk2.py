"""The current `anthropic` SDK (2.x, strict response validation) drives every endpoint of the emulator."""

from __future__ import annotations

import asyncio
import json

import anthropic
import jsonschema
import pytest
from anthropic.types import Message, MessageTokensCount
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from emulator.emu_helpers import MODEL, admin, params

from batchpilot.emulator.behaviour.faults import FaultRule
from batchpilot.emulator.behaviour.tokenizer import input_tokens

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "issues": {"type": "array", "minItems": 1, "items": {
            "type": "object", "properties": {"line": {"type": "integer"}, "note": {"type": "string"}},
            "required": ["line", "note"], "additionalProperties": False}},
    },
    "required": ["verdict", "score", "issues"],
    "additionalProperties": False,
}
TOOL = {"name": "emit_result", "description": "Return the review.", "input_schema": SCHEMA}


def sdk(emu, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.base_url, api_key="test-key", _strict_response_validation=True, **kw)


def async_sdk(emu, **kw) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="test-key", _strict_response_validation=True, **kw)


def test_messages_text_tools_schema_and_count_tokens(emulator):
    client = sdk(emulator)
    text = client.messages.create(**params("Say hi"))
    assert isinstance(text, Message) and text.content[0].type == "text" and text.stop_reason == "end_turn"
    assert text._request_id and text._request_id.startswith("req_")
    # usage bills the emulator's own tokenizer (not the client's estimate)
    assert text.usage.input_tokens == input_tokens(params("Say hi"))

    tool = client.messages.create(**params("Review", tools=[TOOL], tool_choice={"type": "tool", "name": "emit_result"}))
    assert tool.stop_reason == "tool_use" and tool.content[0].type == "tool_use"
    jsonschema.validate(tool.content[0].input, SCHEMA)

    structured = client.messages.create(**params("Review", output_config={"format": {"type": "json_schema", "schema": SCHEMA}}))
    jsonschema.validate(json.loads(structured.content[0].text), SCHEMA)

    body = params("Count me", system="You count.", tools=[TOOL])
    counted = client.messages.count_tokens(model=MODEL, messages=body["messages"], system=body["system"], tools=body["tools"])
    assert isinstance(counted, MessageTokensCount)
    assert counted.input_tokens == input_tokens({k: v for k, v in body.items() if k != "max_tokens"})


def test_same_request_same_answer(emulator):
    client = sdk(emulator)
    first = client.messages.create(**params("Determinism please"))
    second = client.messages.create(**params("Determinism please"))
    assert first.content == second.content and first.id != second.id


def test_streaming_both_ways(emulator):
    client = sdk(emulator)
    plain = client.messages.create(**params("Stream me"))
    with client.messages.stream(**params("Stream me")) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == plain.content[0].text == final.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens and final.stop_reason == "end_turn"

    events = list(client.messages.create(**params("Review", tools=[TOOL], tool_choice={"type": "tool", "name": "emit_result"}), stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    partial = "".join(e.delta.partial_json for e in events if e.type == "content_block_delta")
    jsonschema.validate(json.loads(partial), SCHEMA)


def test_batch_lifecycle_all_four_result_types(make_emulator):
    emu = make_emulator(batch_speed=1.0, cancel_delay=5.0, faults=[FaultRule(kind="expired", match="^exp-")])
    client = sdk(emu)
    requests = [
        {"custom_id": "ok-1", "params": params("fine")},
        {"custom_id": "bad-1", "params": params("too long", max_tokens=10_000_000)},
        {"custom_id": "exp-1", "params": params("late")},
        {"custom_id": "never-1", "params": params("not reached")},
        {"custom_id": "never-2", "params": params("not reached")},
    ]
    batch = client.messages.batches.create(requests=requests)
    assert isinstance(batch, MessageBatch) and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 5 and batch.results_url is None
    emu.advance(3.5)  # three requests done at one per second
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert client.messages.batches.retrieve(batch.id).processing_status == "canceling"
    emu.advance(5)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    counts = ended.request_counts
    assert (counts.succeeded, counts.errored, counts.expired, counts.canceled, counts.processing) == (1, 1, 1, 2, 0)
    assert ended.results_url.startswith(emu.base_url)
    results = {r.custom_id: r for r in client.messages.batches.results(batch.id)}
    assert all(isinstance(r, MessageBatchIndividualResponse) for r in results.values())
    assert {k: r.result.type for k, r in results.items()} == {
        "ok-1": "succeeded", "bad-1": "errored", "exp-1": "expired", "never-1": "canceled", "never-2": "canceled"}
    assert results["ok-1"].result.message.usage.service_tier == "batch"
    assert results["bad-1"].result.error.error.type == "invalid_request_error"
    assert "maximum allowed number of output tokens" in results["bad-1"].result.error.error.message
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.type == "message_batch_deleted" and deleted.id == batch.id
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_list_pages_both_ways_to_the_end(make_emulator):
    emu = make_emulator()
    client = sdk(emu)
    created = [client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": params()}]).id for i in range(7)]
    newest_first = list(reversed(created))
    forward = [b.id for b in client.messages.batches.list(limit=2)]
    assert forward == newest_first
    first_page = client.messages.batches.list(limit=3)
    assert first_page.has_more and first_page.first_id == newest_first[0] and first_page.last_id == newest_first[2]
    backward = [b.id for b in client.messages.batches.list(limit=2, before_id=created[0])]
    assert sorted(backward) == sorted(newest_first[:-1])
    page = client.messages.batches.list(limit=2, before_id=created[0])
    assert [b.id for b in page.data] == newest_first[4:6] and page.has_more
    assert [b.id for b in client.messages.batches.list(limit=1000, after_id=created[0])] == []


def test_async_client_drives_every_endpoint(make_emulator):
    emu = make_emulator(batch_speed=1.0)

    async def scenario() -> None:
        client = async_sdk(emu)
        message = await client.messages.create(**params("async hi"))
        assert message.content[0].type == "text"
        counted = await client.messages.count_tokens(model=MODEL, messages=params("async hi")["messages"])
        assert counted.input_tokens == message.usage.input_tokens
        async with client.messages.stream(**params("async stream")) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "end_turn"
        batch = await client.messages.batches.create(requests=[{"custom_id": f"a{i}", "params": params(str(i))} for i in range(3)])
        admin(emu, f"batches/{batch.id}/finish")
        retrieved = await client.messages.batches.retrieve(batch.id)
        assert retrieved.processing_status == "ended" and retrieved.request_counts.succeeded == 3
        ids = [b.id async for b in client.messages.batches.list(limit=1)]
        assert batch.id in ids
        lines = [r async for r in await client.messages.batches.results(batch.id)]
        assert sorted(r.custom_id for r in lines) == ["a0", "a1", "a2"]
        other = await client.messages.batches.create(requests=[{"custom_id": "c", "params": params()}])
        canceled = await client.messages.batches.cancel(other.id)
        assert canceled.processing_status == "canceling"
        deleted = await client.messages.batches.delete(batch.id)
        assert deleted.id == batch.id
        await client.close()

    asyncio.run(scenario())
