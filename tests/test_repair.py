"""Repair: `retry --only invalid` re-asks only the invalid items, with their answer and the validator's message.

End to end against the emulator (batch rounds and direct mode, counted from the emulator's request log), and
the follow-up request of each output style built from hand-made answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from test_batch_cli import api, creates, log_lines, write_items  # noqa: F401  (api is a fixture)

TEMPLATES = Path(__file__).resolve().parent.parent / "skills" / "batch-processing" / "templates"


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def by_id(path: Path) -> dict[str, dict]:
    return {r["custom_id"]: r for r in records(path)}


def template_in_style(style: str, tmp: Path) -> Path:
    target = tmp / f"code-review-{style}"
    shutil.copytree(TEMPLATES / "code-review", target)
    meta = json.loads((target / "template.json").read_text())
    meta["output_style"] = style
    (target / "template.json").write_text(json.dumps(meta))
    return target


def answer_text(run: Path, custom_id: str) -> str:
    """The text of the item's first answer."""
    rec = next(r for r in records(run / "results.jsonl") if r["custom_id"] == custom_id)
    return "".join(b["text"] for b in rec["result"]["message"]["content"] if b["type"] == "text")


def test_batch_repair_rounds_fix_only_the_invalid_items(bp, api, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    broken = [FaultRule("invalid_json", match="^item-0000[12]$"), FaultRule("truncate", match="^item-00003$")]
    stubborn = FaultRule("invalid_json", match="^item-00004$")
    emu = api("first", faults=[*broken, stubborn])
    items = write_items(Path("items.jsonl"), 8)
    r = bp("run", "--template", "code-review", "--items", items, "--mode", "batch", "--run", "job")
    assert r.code == 0, r.stderr
    job = Path("job")
    first = by_id(job / "merged.jsonl")
    bad = {"item-00001", "item-00002", "item-00003", "item-00004"}
    assert {cid for cid, rec in first.items() if rec["status"] == "invalid"} == bad  # run does not repair
    assert [c["requests"] for c in creates(log_lines(emu.log_file))] == [8]
    answers = {rec["custom_id"]: rec["result"]["message"] for rec in records(job / "results.jsonl")}

    # The repair rounds go to an emulator where item-00004 now refuses (a new reason); the others answer well.
    emu = api("repair", faults=[FaultRule("refusal", match="^item-00004$")])
    r = bp("retry", job, "--only", "invalid")
    assert r.code == 0, r.stderr
    assert r.receipt["repairs"] == {"feedback": 3, "max_tokens": 1, "resend": 1}  # round 3: the refusal, unchanged
    assert "re-asked with their answer and the validator's message" in r.stderr
    assert "max_tokens doubled" in r.stderr
    # Round 2 re-asks exactly the 4 invalid items; round 3 only the one its repair did not fix, then it stops.
    assert [c["requests"] for c in creates(log_lines(emu.log_file))] == [4, 1]
    round2 = by_id(job / "rounds" / "round-2.jsonl")
    assert set(round2) == bad and set(by_id(job / "rounds" / "round-3.jsonl")) == {"item-00004"}
    originals = by_id(job / "requests.jsonl")
    for cid in ("item-00001", "item-00002", "item-00004"):
        sent, original = round2[cid]["params"], originals[cid]["params"]
        assert sent["messages"][:1] == original["messages"] and len(sent["messages"]) == 3
        assistant, user = sent["messages"][1], sent["messages"][2]
        assert assistant == {"role": "assistant", "content": answers[cid]["content"][0]["text"]}
        assert user["role"] == "user"  # never an assistant prefill (refused with JSON-schema output)
        # The broken answer's only complete JSON is a nested object: the validator's errors are about that one.
        error = first[cid]["error"]
        assert error["type"] == "schema" and error["details"]
        lines = "".join(f"\n- {d['path']}: {d['message']}" for d in error["details"])
        assert user["content"] == ("Your previous answer was not one complete JSON object, and the JSON found in it "
                                   f"did not match the required JSON Schema:{lines}\n"
                                   "Reply again with only the corrected JSON object.")
        assert sent["output_config"] == original["output_config"] and sent["max_tokens"] == original["max_tokens"]
    cut = round2["item-00003"]["params"]
    assert cut["messages"] == originals["item-00003"]["params"]["messages"]  # cut off: more room, same question
    assert cut["max_tokens"] == 2 * originals["item-00003"]["params"]["max_tokens"]

    assert bp("merge", job).code == 0
    after = by_id(job / "merged.jsonl")
    for cid in ("item-00001", "item-00002", "item-00003"):
        assert after[cid]["status"] == "ok" and after[cid]["attempts"] == 2 and after[cid]["error"] is None
    stuck = after["item-00004"]
    assert stuck["status"] == "invalid" and stuck["attempts"] == 3
    newest = [rec for rec in records(job / "results.jsonl") if rec["custom_id"] == "item-00004"]
    assert [rec["attempt"] for rec in newest] == [1, 2, 3]
    assert first["item-00004"]["error"]["type"] == "schema" and stuck["error"]["type"] == "refusal"  # the newest reason
    assert by_id(job / "rounds" / "round-3.jsonl")["item-00004"] == originals["item-00004"]  # a refusal: asked again as is
    for cid, rec in after.items():
        if cid not in bad:
            assert rec["attempts"] == 1 and rec["status"] == "ok"  # never re-sent

    again = bp("retry", job, "--only", "invalid", "--max-rounds", "3")
    assert again.code == 0 and again.receipt["submitted"] == [] and "round limit" in again.receipt["stopped"]


def test_retry_defaults_include_invalid_and_parse_only_accepts_it(tmp_path):
    from batchpilot.results.selection import DEFAULT_SELECTION, RETRY_DEFAULT, parse_only

    assert parse_only(None) == RETRY_DEFAULT == DEFAULT_SELECTION | {"invalid"}
    assert parse_only("invalid") == {"invalid"}
    assert "invalid" not in DEFAULT_SELECTION  # `run`'s own rounds resend failures unchanged


@pytest.mark.parametrize("style", ["json_schema", "tool"])
def test_direct_repair_round(bp, api, tmp_path, style):
    from batchpilot.emulator.behaviour.faults import FaultRule

    # For a Messages request the fault's pattern is searched in the last user turn: the item's content. The
    # follow-up's last turn is the validator's message, so the repair is answered cleanly.
    emu = api(faults=[FaultRule("invalid_json", match=r"return x \+ [12]\n"),
                      FaultRule("truncate", match=r"return x \+ 3\n", times=1)])
    items = write_items(Path("items.jsonl"), 6)
    run = Path("run")
    # Sonnet 5 accepts forced tool use (the template's Sonnet 5.5 would be sent the json_schema style)
    r = bp("prepare", "--template", template_in_style(style, tmp_path), "--items", items, "--run", run,
           "--mode", "direct", "--model", "claude-sonnet-5")
    assert r.code == 0, r.stderr
    r = bp("direct", run)
    assert r.code == 0, r.stderr
    assert bp("merge", run).code == 0
    first = by_id(run / "merged.jsonl")
    bad = {"item-00001", "item-00002", "item-00003"}
    assert {cid for cid, rec in first.items() if rec["status"] == "invalid"} == bad
    sent_before = sum(1 for e in log_lines(emu.log_file) if e["path"] == "/v1/messages")

    r = bp("retry", run, "--only", "invalid")  # the run was prepared for direct: retry goes direct
    assert r.code == 0, r.stderr
    assert r.receipt["mode"] == "direct" and r.receipt["selected"] == {"invalid": 3}
    assert r.receipt["repairs"] == {"feedback": 2, "max_tokens": 1}
    assert r.receipt["direct"]["counts"]["succeeded"] == 3
    assert sum(1 for e in log_lines(emu.log_file) if e["path"] == "/v1/messages") - sent_before == 3
    round1 = by_id(run / "rounds" / "direct-1.jsonl")
    assert set(round1) == bad
    for cid in ("item-00001", "item-00002"):
        messages = round1[cid]["params"]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] in (answer_text(run, cid), [{"type": "text", "text": answer_text(run, cid)}])
        if style == "tool":  # the emulator's broken answer is text, not a call
            assert messages[2]["content"] == "Your previous answer did not call the emit_result tool. Call " \
                                             "emit_result with the complete result; do not answer in text."
        else:
            lines = "".join(f"\n- {d['path']}: {d['message']}" for d in first[cid]["error"]["details"])
            assert messages[2]["content"].startswith("Your previous answer was not one complete JSON object, and "
                                                     f"the JSON found in it did not match the required JSON Schema:{lines}\n")
    cut = round1["item-00003"]["params"]
    assert cut["max_tokens"] == 2 * by_id(run / "requests.jsonl")["item-00003"]["params"]["max_tokens"]
    assert bp("merge", run).code == 0
    after = by_id(run / "merged.jsonl")
    assert {rec["status"] for rec in after.values()} == {"ok"}
    assert all(after[cid]["attempts"] == 2 for cid in bad)
    assert all(after[cid]["attempts"] == 1 for cid in after if cid not in bad)

    again = bp("retry", run, "--mode", "direct")
    assert again.code == 0 and again.receipt["stopped"] == "nothing left to retry"


# ------------------------------------------------------------------------------ follow-ups, one per style


SCHEMA = json.loads((TEMPLATES / "code-review" / "schema.json").read_text())
FINDING = {"file": "a.py", "line_start": 1, "line_end": 1, "severity": "urgent", "category": "bug",
           "message": "m", "suggestion": "s", "confidence": "high"}
ORIGINAL = {"model": "claude-sonnet-5", "max_tokens": 1000, "system": [{"type": "text", "text": "Review."}],
            "messages": [{"role": "user", "content": "<item>def f(): pass</item>"}]}


def judged(answer: dict, style: str) -> dict:
    from batchpilot.results.judge import judge_success
    from batchpilot.results.validate import OutputValidator

    output, error = judge_success({"result": {"type": "succeeded", "message": answer}}, style, OutputValidator(SCHEMA))
    assert output is None
    return error


def test_follow_up_json_schema_style():
    from batchpilot.results.repair import repair_params

    params = {**ORIGINAL, "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}
    text = json.dumps({"summary": "ok", "findings": [FINDING]})
    answer = {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}
    error = judged(answer, "json_schema")
    new, how = repair_params(params, answer, error, "json_schema")
    assert how == "feedback" and new["output_config"] == params["output_config"]
    assert new["messages"][:1] == params["messages"]
    assert new["messages"][1] == {"role": "assistant", "content": text}
    user = new["messages"][2]
    assert user["role"] == "user" and user["content"].startswith("Your previous answer did not match the required JSON Schema:\n")
    assert "- $.findings[0].severity: 'urgent' is not one of" in user["content"]
    assert user["content"].endswith("Reply again with only the corrected JSON object.")
    assert params["messages"] == ORIGINAL["messages"]  # the original is not touched


def test_follow_up_tool_style_answers_every_tool_use_with_an_error_result():
    from batchpilot.results.repair import repair_params

    params = {**ORIGINAL, "tools": [{"name": "emit_result", "input_schema": SCHEMA}],
              "tool_choice": {"type": "tool", "name": "emit_result"}}
    call = {"type": "tool_use", "id": "toolu_01abc", "name": "emit_result", "input": {"summary": 3, "findings": []}}
    answer = {"content": [{"type": "text", "text": "Here it is."}, call], "stop_reason": "tool_use"}
    new, how = repair_params(params, answer, judged(answer, "tool"), "tool")
    assert how == "feedback" and new["tool_choice"] == params["tool_choice"]
    assert new["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "Here it is."}, call]}
    (result,) = new["messages"][2]["content"]
    assert new["messages"][2]["role"] == "user"
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_01abc" and result["is_error"] is True
    assert "- $.summary: 3 is not of type 'string'" in result["content"]
    assert result["content"].endswith("Call emit_result again with the corrected result.")

    wrong = {"content": [{"type": "tool_use", "id": "toolu_01x", "name": "search", "input": {"q": "x"}}],
             "stop_reason": "tool_use"}
    new, how = repair_params(params, wrong, judged(wrong, "tool"), "tool")
    (result,) = new["messages"][2]["content"]
    assert how == "feedback" and result["tool_use_id"] == "toolu_01x" and "no tool named 'search'" in result["content"]

    prose = {"content": [{"type": "text", "text": "The file looks fine."}], "stop_reason": "end_turn"}
    new, how = repair_params(params, prose, judged(prose, "tool"), "tool")
    assert how == "feedback" and new["messages"][1]["content"] == [{"type": "text", "text": "The file looks fine."}]
    assert new["messages"][2]["content"].startswith("Your previous answer did not call the emit_result tool.")


def test_follow_up_prompt_style_and_the_answers_feedback_cannot_fix():
    from batchpilot.results.repair import repair_params

    answer = {"content": [{"type": "text", "text": "Sure! The review: looks fine."}], "stop_reason": "end_turn"}
    error = judged(answer, "prompt")
    new, how = repair_params(ORIGINAL, answer, error, "prompt")
    assert how == "feedback" and new["messages"][1]["content"] == "Sure! The review: looks fine."
    assert new["messages"][2]["content"].startswith("Your previous answer could not be used: the answer holds no complete JSON")

    cut = {"content": [{"type": "text", "text": '{"summary": "a'}], "stop_reason": "max_tokens",
           "usage": {"output_tokens": 1000}}
    new, how = repair_params(ORIGINAL, cut, judged(cut, "prompt"), "prompt")
    assert how == "max_tokens" and new["max_tokens"] == 2000 and new["messages"] == ORIGINAL["messages"]
    near_cap = {**ORIGINAL, "max_tokens": 100_000}
    assert repair_params(near_cap, cut, judged(cut, "prompt"), "prompt")[0]["max_tokens"] == 128_000  # the model's limit

    refusal = {"content": [{"type": "text", "text": "I can't help."}], "stop_reason": "refusal"}
    assert repair_params(ORIGINAL, refusal, judged(refusal, "prompt"), "prompt") == (ORIGINAL, "resend")
