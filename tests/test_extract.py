"""extract and validate: JSON out of answers by style, and the fast schema check that must never disagree."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from batchpilot.results.extract import extract_output, find_json_objects
from batchpilot.results.validate import OutputValidator, compile_fast, json_path

TEMPLATE = Path(__file__).parent / "merge_cases" / "template"
SCHEMA = json.loads((TEMPLATE / "schema.json").read_text())
EXAMPLE = json.loads((TEMPLATE / "examples" / "output.json").read_text())


def message(*blocks, stop="end_turn", **extra):
    return {"message": {"content": list(blocks), "stop_reason": stop, **extra}}


def text(t):
    return {"type": "text", "text": t}


@pytest.mark.parametrize("answer, expected", [
    ('{"a": 1}', [{"a": 1}]),
    ('  \n{"a": 1}\n', [{"a": 1}]),
    ('```json\n{"a": 1}\n```', [{"a": 1}]),
    ('```JSON\r\n{"a": 1}\r\n```', [{"a": 1}]),
    ('Here:\n```\n{"a": 1}\n```\nbye', [{"a": 1}]),
    ('{"a": 1}\nThat is all.', [{"a": 1}]),
    ('Sure. {"a": 1} Done.', [{"a": 1}]),
    ('{"a": 1} {"b": 2}', [{"a": 1}, {"b": 2}]),
    ('{"a": 1} and again {"a": 1}', [{"a": 1}]),
    ('```python\nx = {"no": 1}\n```\n```json\n{"yes": 1}\n```', [{"yes": 1}, {"no": 1}]),
    ('a { broken { "a": 1 }', [{"a": 1}]),
    ('{"s": "a } brace in a string {"}', [{"s": "a } brace in a string {"}]),
    ('{"a": {"nested": [1, 2, {"b": null}]}}', [{"a": {"nested": [1, 2, {"b": None}]}}]),
    ('{"a": 1', []),
    ('no json here', []),
    ("", []),
    ('{"emoji": "✓ ünïcode"}', [{"emoji": "✓ ünïcode"}]),
])
def test_find_json_objects(answer, expected):
    found, _ = find_json_objects(answer)
    assert found == expected


def test_find_json_objects_names_a_non_object_document():
    assert find_json_objects("[1, 2]") == ([], "an array")
    assert find_json_objects('"just a string"') == ([], "a string")
    assert find_json_objects("null") == ([], "null")


def test_find_json_objects_is_bounded_on_hostile_text():
    found, _ = find_json_objects("{" * 200_000)
    assert found == []
    many = " ".join('{"n": %d}' % i for i in range(100))
    assert len(find_json_objects(many)[0]) == 5


@pytest.mark.parametrize("style", ["json_schema", "tool", "prompt"])
def test_output_key_wins_in_every_style(style):
    assert extract_output({"type": "succeeded", "output": {"a": 1}}, style).candidates == [{"a": 1}]
    assert extract_output({"type": "succeeded", "message": {"output": {"a": 1}}}, style).candidates == [{"a": 1}]


@pytest.mark.parametrize("result, style, kind, words", [
    (message(text('{"a": 1'), stop="max_tokens"), "json_schema", "truncated", "max_tokens"),
    (message(stop="max_tokens"), "tool", "truncated", "max_tokens"),
    (message(text("No."), stop="refusal", stop_details={"type": "refusal", "explanation": "Not allowed."}), "prompt", "refusal", "Not allowed"),
    (message(), "json_schema", "empty", "empty"),
    ({"message": {"content": None, "stop_reason": "end_turn"}}, "json_schema", "empty", "empty"),
    (message({"type": "tool_use", "name": "other", "input": {}}), "tool", "wrong_tool", "'other'"),
    (message(text("nothing")), "tool", "no_tool_call", "emit_result"),
    (message(text("nothing")), "prompt", "no_json", "nothing"),
    (message(text("[1]")), "json_schema", "not_object", "an array"),
    (message({"type": "tool_use", "name": "emit_result", "input": 3}), "tool", "not_object", "a number"),
    ({"message": "free text without json"}, "prompt", "no_json", "free text"),
    ({"type": "succeeded"}, "json_schema", "empty", "no message"),
])
def test_unusable_answers(result, style, kind, words):
    found = extract_output(result, style)
    assert found.candidates == [] and found.error["type"] == kind and words in found.error["message"]


def test_tool_style_reads_the_forced_call_and_ignores_text():
    found = extract_output(message(text("Recording now."), {"type": "tool_use", "name": "emit_result", "input": {"a": 1}},
                                   stop="tool_use"), "tool")
    assert found.candidates == [{"a": 1}] and found.stop_reason == "tool_use"


def test_json_schema_style_joins_text_blocks_and_skips_thinking():
    found = extract_output(message({"type": "thinking", "thinking": '{"not": "this"}', "signature": "s"},
                                   text('{"a": '), text("1}")), "json_schema")
    assert found.candidates == [{"a": 1}]


def test_json_path():
    assert json_path([]) == "$"
    assert json_path(["findings", 0, "severity"]) == "$.findings[0].severity"
    assert json_path(["odd key", 2]) == '$["odd key"][2]'


def test_validator_reports_paths_shallowest_first():
    bad = copy.deepcopy(EXAMPLE)
    bad["findings"][1]["severity"] = "urgent"
    del bad["summary"]
    errors = OutputValidator(SCHEMA).errors(bad)
    assert errors[0] == {"path": "$", "message": "'summary' is a required property"}
    assert errors[1]["path"] == "$.findings[1].severity"


def test_validator_honours_the_declared_draft():
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"xs": {"type": "array", "items": [{"type": "string"}], "additionalItems": False}}}
    validator = OutputValidator(draft7)
    assert validator.errors({"xs": ["a"]}) == []
    assert validator.errors({"xs": ["a", "b"]})[0]["path"] == "$.xs"


def test_fast_check_declines_what_it_does_not_know():
    assert compile_fast({"type": "object", "$ref": "#/$defs/x"}) is None
    assert compile_fast({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}) is None
    assert compile_fast({"type": "object", "patternProperties": {"^x": {}}, "additionalProperties": False}) is None
    assert compile_fast(SCHEMA) is not None


MUTATIONS = [
    lambda o: o.pop("summary", None),
    lambda o: o.update(summary=7),
    lambda o: o.update(extra=True),
    lambda o: o.update(findings={}),
    lambda o: o["findings"].append("x"),
    lambda o: o["findings"].append({}),
    lambda o: o["findings"] and o["findings"][0].update(severity="urgent"),
    lambda o: o["findings"] and o["findings"][0].update(line_start=True),
    lambda o: o["findings"] and o["findings"][0].update(line_start=2.0),
    lambda o: o["findings"] and o["findings"][0].update(line_start=2.5),
    lambda o: o["findings"] and o["findings"][0].update(line_end=None),
    lambda o: o["findings"] and o["findings"][0].pop("confidence"),
    lambda o: o["findings"] and o["findings"][0].update(more="x"),
    lambda o: o["findings"] and o["findings"][0].update(confidence=1),
    lambda o: o.clear(),
]


def test_fast_check_never_accepts_what_jsonschema_rejects():
    from jsonschema import Draft202012Validator

    fast, strict = compile_fast(SCHEMA), Draft202012Validator(SCHEMA)
    rng = random.Random(3)
    disagreements = 0
    for _ in range(3000):
        value = copy.deepcopy(EXAMPLE)
        for mutate in rng.sample(MUTATIONS, rng.randint(0, 3)):
            try:
                mutate(value)
            except (KeyError, AttributeError, TypeError, IndexError):
                pass  # an earlier mutation removed what this one changes
        valid = strict.is_valid(value)
        if fast(value):
            assert valid, value
        elif valid:
            disagreements += 1  # allowed (jsonschema decides), but should be rare: only the 2.0-as-integer case
    assert fast(EXAMPLE)
    assert disagreements < 600
