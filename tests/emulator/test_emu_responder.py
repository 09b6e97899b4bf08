"""The deterministic responder (schema-valid objects), the prompt-cache simulation, and scenario mode."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import pytest
from emulator.emu_helpers import MODEL, params, raw

from batchpilot.emulator.behaviour.scenario import Step
from batchpilot.emulator.state.cache import PromptCache
from batchpilot.emulator.behaviour.schemagen import example
from batchpilot.core.tokens import ESTIMATE_ERROR, estimate_input_tokens

SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 30, "maxLength": 40}}, "required": ["a"]},
    {"type": "object", "properties": {"kind": {"const": "fixed"}, "level": {"enum": ["low", "mid", "high"]}},
     "required": ["kind", "level"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 10, "maximum": 12}, "minItems": 3, "maxItems": 3},
    {"type": "array", "items": {"enum": ["x", "y"]}, "uniqueItems": True, "minItems": 2},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"},
                                      "mail": {"type": "string", "format": "email"}, "ratio": {"type": "number", "exclusiveMaximum": 1, "minimum": 0.5}},
     "required": ["when", "id", "mail", "ratio"]},
    {"$defs": {"item": {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}, "required": ["n"]}},
     "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1}},
     "required": ["items"], "additionalProperties": False},
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
               {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_values_validate(schema):
    for key in ("k1", "k2", "k3"):
        value = example(schema, key)
        jsonschema.validate(value, schema)
        assert value == example(schema, key)


def test_seed_changes_answers_but_not_their_validity(make_emulator):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}, "required": ["n", "s"]}
    body = params("same", output_config={"format": {"type": "json_schema", "schema": schema}})
    answers = []
    for seed in (1, 1, 2):
        emu = make_emulator(seed=seed)
        answers.append(json.loads(raw(emu).json("POST", "/v1/messages", body)[2]["content"][0]["text"]))
    assert answers[0] == answers[1] != answers[2]


def test_structured_output_tool_gets_a_valid_tool_call(emulator):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    tools = [{"name": "Read", "input_schema": {"type": "object"}}, {"name": "StructuredOutput", "input_schema": schema}]
    status, _, message = raw(emulator).json("POST", "/v1/messages", params("Say hi", tools=tools))
    assert message["stop_reason"] == "tool_use" and message["content"][0]["name"] == "StructuredOutput"
    jsonschema.validate(message["content"][0]["input"], schema)
    _, _, plain = raw(emulator).json("POST", "/v1/messages", params("Say hi", tools=tools[:1]))
    assert plain["stop_reason"] == "end_turn"  # tools offered but none forced: text


def cached(text: str, ttl: str | None = None, tail: str = "question") -> dict:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return params(tail, system=[{"type": "text", "text": text, "cache_control": control}])


def test_cache_writes_then_reads_and_sums_to_what_count_tokens_counts(make_emulator):
    emu = make_emulator()
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", _strict_response_validation=True)
    body = cached("shared instructions " * 1200, ttl="1h")  # ~6,000 tokens, above haiku's 4,096 minimum
    first = client.messages.create(**body).usage
    second = client.messages.create(**cached("shared instructions " * 1200, ttl="1h", tail="another")).usage
    count = client.messages.count_tokens(model=MODEL, messages=body["messages"], system=body["system"])
    total = count.input_tokens
    # the emulator's own count, which the client's estimate approaches within its stated error
    assert abs(estimate_input_tokens(body) / total - 1) <= ESTIMATE_ERROR
    assert first.cache_creation_input_tokens > 4096 and first.cache_read_input_tokens == 0
    assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens
    assert first.input_tokens + first.cache_creation_input_tokens == total
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0


def test_cache_respects_minimum_length_and_ttl():
    cache = PromptCache()
    short = cached("tiny prefix")
    assert cache.apply(short, 0).cache_read == 0 and cache.apply(short, 1).write_5m == 0
    long = cached("x" * 20_000)
    assert cache.apply(long, 0).write_5m > 0
    assert cache.apply(long, 299).cache_read > 0  # within 5 minutes (and refreshed)
    assert cache.apply(long, 299 + 301).write_5m > 0  # expired: written again


def test_batches_apply_caching_too(make_emulator):
    emu = make_emulator(batch_cache_hit_rate=1.0)
    shared = "policy text " * 3000  # above Haiku 4.5's 4,096-token minimum in the emulator's count
    requests = [{"custom_id": f"r{i}", "params": cached(shared, tail=f"item {i}")} for i in range(3)]
    _, _, batch = raw(emu).json("POST", "/v1/messages/batches", {"requests": requests})
    raw(emu).json("POST", f"/_emulator/batches/{batch['id']}/finish")
    _, _, body = raw(emu).call("GET", f"/v1/messages/batches/{batch['id']}/results")
    lines = sorted((json.loads(line) for line in body.splitlines()), key=lambda line: line["custom_id"])
    usages = [line["result"]["message"]["usage"] for line in lines]  # in input order: the first one writes
    assert usages[0]["cache_creation_input_tokens"] > 0 and usages[0]["service_tier"] == "batch"
    assert all(u["cache_read_input_tokens"] == usages[0]["cache_creation_input_tokens"] for u in usages[1:])


def test_scenario_steps_answer_in_order(make_emulator):
    steps = [
        Step(when={"last_user_contains": "fail"}, reply={"error": {"status": 529, "type": "overloaded_error", "message": "busy"}}, once=True),
        Step(when={"tool": "Read", "turn": "prompt"}, reply={"tool_use": {"name": "Read", "input": {"file_path": "a.txt"}}}),
        Step(when={"turn": "tool_result"}, reply={"text": "read it"}),
        Step(when={"contains": "hello"}, reply={"text": "scripted hello"}),
    ]
    emu = make_emulator(scenario=steps)
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0, _strict_response_validation=True)
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**params("please fail"))
    assert client.messages.create(**params("please fail")).content[0].text != "busy"  # once: used up
    tools = [{"name": "Read", "input_schema": {"type": "object"}}]
    call = client.messages.create(**params("open a.txt", tools=tools))
    assert call.stop_reason == "tool_use" and call.content[0].input == {"file_path": "a.txt"}
    follow = params("x", tools=tools)
    follow["messages"] = [follow["messages"][0], {"role": "assistant", "content": [call.content[0].model_dump(exclude_none=True)]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.content[0].id, "content": "1"}]}]
    assert client.messages.create(**follow).content[0].text == "read it"
    assert client.messages.create(**params("hello there")).content[0].text == "scripted hello"


def test_scenario_reply_with_several_tool_calls_and_negative_conditions(make_emulator, tmp_path):
    steps = [
        Step(when={"contains": "fan out", "not_contains": "wave done"},
             reply={"text": "Starting the wave.", "tool_uses": [{"name": "Agent", "input": {"n": i}} for i in range(3)]}),
        Step(when={"contains": ["fan out", "wave done"]}, reply={"text": "all done"}),
    ]
    log = tmp_path / "log.jsonl"
    emu = make_emulator(scenario=steps, log_path=str(log))
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0, _strict_response_validation=True)
    tools = [{"name": "Agent", "input_schema": {"type": "object"}}]
    call = client.messages.create(**params("fan out", tools=tools))
    uses = [b for b in call.content if b.type == "tool_use"]
    assert call.stop_reason == "tool_use" and call.content[0].text == "Starting the wave."
    assert [u.input for u in uses] == [{"n": 0}, {"n": 1}, {"n": 2}] and len({u.id for u in uses}) == 3
    with client.messages.stream(**params("fan out", tools=tools)) as stream:  # the same blocks over SSE
        streamed = stream.get_final_message()
    assert [b.model_dump() for b in streamed.content] == [b.model_dump() for b in call.content]
    assert client.messages.create(**params("fan out: wave done")).content[0].text == "all done"
    client.messages.create(**params("unscripted"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line.get("scenario_step") for line in lines] == [0, 0, 1, None]  # which step answered each request


def test_scenario_file_format_is_validated():
    from batchpilot.emulator.behaviour.scenario import load_steps

    assert len(load_steps({"steps": [{"when": {}, "reply": {"text": "hi"}}]})) == 1
    for bad in ([{"when": {"colour": "red"}, "reply": {"text": "x"}}], [{"when": {}, "reply": {}}],
                [{"when": {"turn": "later"}, "reply": {"text": "x"}}], "steps",
                [{"when": {}, "reply": {"tool_uses": []}}], [{"when": {"not_contains": 3}, "reply": {"text": "x"}}],
                [{"when": {}, "reply": {"tool_uses": [{"input": {}}]}}],
                [{"when": {}, "reply": {"tool_use": {"name": "A"}, "tool_uses": [{"name": "B"}]}}]):
        with pytest.raises(ValueError):
            load_steps(bad)


def test_batch_cache_hits_are_best_effort_and_results_come_in_any_order(make_emulator):
    emu = make_emulator()  # the default in-batch hit rate is well below 100%
    shared = "policy text " * 3000
    requests = [{"custom_id": f"r{i:03d}", "params": cached(shared, tail=f"item {i}")} for i in range(60)]
    _, _, batch = raw(emu).json("POST", "/v1/messages/batches", {"requests": requests})
    raw(emu).json("POST", f"/_emulator/batches/{batch['id']}/finish")
    _, _, body = raw(emu).call("GET", f"/v1/messages/batches/{batch['id']}/results")
    lines = [json.loads(line) for line in body.splitlines()]
    ids = [line["custom_id"] for line in lines]
    assert sorted(ids) == [r["custom_id"] for r in requests] != ids  # all there, not in input order
    _, _, again = raw(emu).call("GET", f"/v1/messages/batches/{batch['id']}/results")
    assert again == body  # the order is seeded: every download agrees
    usages = [line["result"]["message"]["usage"] for line in lines]
    hits = sum(1 for u in usages if u["cache_read_input_tokens"])
    assert 0.3 * 59 < hits < 0.9 * 59
    assert all(u["cache_read_input_tokens"] or u["cache_creation_input_tokens"] for u in usages)  # a miss writes
