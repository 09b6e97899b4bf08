"""The 1.x `anthropic` SDK (x-api-key, anthropic-version 2023-06-01, `?beta=true` on beta batches) drives every
endpoint against an emulator started in this process.

The SDK lives in its own virtual environment (the test runner exports its python as BATCHPILOT_SDK1_PYTHON),
so a small script runs under that interpreter and prints what it saw as one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from batchpilot.emulator.behaviour.faults import FaultRule

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import asyncio, json, sys, urllib.request
    import anthropic

    base = sys.argv[1]
    out = {"version": anthropic.__version__}
    M = "claude-haiku-4-5"
    SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["answer", "n"], "additionalProperties": False}

    def p(text, **kw):
        return {"model": M, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **kw}

    def admin(path, body=None):
        req = urllib.request.Request(base + "/_emulator/" + path, data=json.dumps(body or {}).encode(), method="POST")
        return json.load(urllib.request.urlopen(req))

    c = anthropic.Anthropic(base_url=base, api_key="k", _strict_response_validation=True)
    m = c.messages.create(**p("hi"))
    out["text"] = m.content[0].text
    t = c.messages.create(**p("tool", tools=[{"name": "emit", "input_schema": SCHEMA}], tool_choice={"type": "tool", "name": "emit"}))
    out["tool_input"] = t.content[0].input
    j = c.messages.create(**p("json", output_config={"format": {"type": "json_schema", "schema": SCHEMA}}))
    out["json_text"] = j.content[0].text
    out["count"] = c.messages.count_tokens(model=M, messages=[{"role": "user", "content": "hi"}]).input_tokens
    out["usage_input"] = m.usage.input_tokens
    with c.messages.stream(**p("hi")) as s:
        out["streamed"] = s.get_final_message().content[0].text
    out["raw_events"] = [e.type for e in c.messages.create(**p("hi"), stream=True)]

    reqs = [{"custom_id": cid, "params": p(cid, **({"max_tokens": 10**7} if cid == "bad-1" else {}))}
            for cid in ("ok-1", "bad-1", "exp-1", "never-1")]
    b = c.messages.batches.create(requests=reqs)
    out["created"] = b.processing_status
    admin("advance", {"seconds": 3.5})
    out["canceling"] = c.messages.batches.cancel(b.id).processing_status
    admin("advance", {"seconds": 5})
    r = c.messages.batches.retrieve(b.id)
    out["ended"] = r.processing_status
    out["counts"] = r.request_counts.model_dump()
    out["results"] = {x.custom_id: x.result.type for x in c.messages.batches.results(b.id)}
    out["error_type"] = [x.result.error.error.type for x in c.messages.batches.results(b.id) if x.result.type == "errored"]
    beta = c.beta.messages.batches.create(requests=[{"custom_id": "beta-1", "params": p("beta")}])
    ids = [b.id] + [c.messages.batches.create(requests=[{"custom_id": "x", "params": p("x")}]).id for _ in range(3)]
    out["listed_forward"] = [x.id for x in c.messages.batches.list(limit=2)]
    out["listed_backward"] = [x.id for x in c.messages.batches.list(limit=2, before_id=b.id)]
    out["ids"] = ids + [beta.id]
    out["beta_retrieved"] = c.beta.messages.batches.retrieve(beta.id).id
    out["deleted"] = c.messages.batches.delete(b.id).type

    async def main():
        a = anthropic.AsyncAnthropic(base_url=base, api_key="k", _strict_response_validation=True)
        m = await a.messages.create(**p("async"))
        async with a.messages.stream(**p("async")) as s:
            f = await s.get_final_message()
        n = (await a.messages.count_tokens(model=M, messages=[{"role": "user", "content": "async"}])).input_tokens
        bb = await a.messages.batches.create(requests=[{"custom_id": "z", "params": p("z")}])
        admin("batches/" + bb.id + "/finish")
        lines = [x.result.type async for x in await a.messages.batches.results(bb.id)]
        listed = [x.id async for x in a.messages.batches.list(limit=3)]
        await a.close()
        return {"text_equal": m.content[0].text == f.content[0].text, "count": n, "lines": lines, "listed": bb.id in listed}

    out["async"] = asyncio.run(main())
    print(json.dumps(out))
''')


def sdk1_python() -> str | None:
    env = os.environ.get("BATCHPILOT_SDK1_PYTHON")
    if env:
        return env
    local = ROOT / ".venv-sdk1" / "bin" / "python"
    return str(local) if local.exists() else None


def test_sdk1_drives_every_endpoint(make_emulator, tmp_path):
    python = sdk1_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("BATCHPILOT_SDK1_PYTHON is not set and .venv-sdk1 is missing; run tests/run.py")
        pytest.skip("no 1.x SDK interpreter: set BATCHPILOT_SDK1_PYTHON or run tests/run.py")
    emu = make_emulator(batch_speed=1.0, cancel_delay=5.0, faults=[FaultRule(kind="expired", match="^exp-")])
    script = tmp_path / "sdk1_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run([python, str(script), emu.base_url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["version"].startswith("1.")
    assert out["text"] == out["streamed"] and out["count"] == out["usage_input"]
    assert set(out["tool_input"]) == {"answer", "n"} and isinstance(out["tool_input"]["n"], int)
    assert set(json.loads(out["json_text"])) == {"answer", "n"}
    assert out["raw_events"][0] == "message_start" and out["raw_events"][-1] == "message_stop"
    assert (out["created"], out["canceling"], out["ended"]) == ("in_progress", "canceling", "ended")
    assert out["counts"] == {"processing": 0, "succeeded": 1, "errored": 1, "expired": 1, "canceled": 1}
    assert out["results"] == {"ok-1": "succeeded", "bad-1": "errored", "exp-1": "expired", "never-1": "canceled"}
    assert out["error_type"] == ["invalid_request_error"]
    everything = list(reversed(out["ids"][:1] + [out["ids"][-1]] + out["ids"][1:4]))
    assert out["listed_forward"] == [out["ids"][3], out["ids"][2], out["ids"][1], out["ids"][4], out["ids"][0]]
    assert sorted(out["listed_backward"]) == sorted(everything[:-1])
    assert out["beta_retrieved"] == out["ids"][-1] and out["deleted"] == "message_batch_deleted"
    assert out["async"]["text_equal"] and out["async"]["count"] > 0
    assert out["async"]["lines"] == ["succeeded"] and out["async"]["listed"]
