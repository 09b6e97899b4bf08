"""Headless mode: `claude -p` subprocesses, tested with a stand-in script for the pool logic and against the real
Claude Code CLI pointed at the emulator (network-isolated with `unshare -n` where the kernel allows it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchpilot.executors.headless import Call, interpret
from batchpilot.results.merge import merge_run
from conftest import require_tool
from test_agents import VALID, make_template, prepare

CLAUDE_ENV = {"DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
              "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
              "ANTHROPIC_API_KEY": "dummy"}
LO_UP = ("import socket,fcntl,struct;"
         "s=socket.socket();fcntl.ioctl(s.fileno(),0x8914,struct.pack('16sH14x',b'lo',0x41))")  # SIOCSIFFLAGS up|running


def netns_available() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-n", sys.executable, "-c", LO_UP], capture_output=True)
    return probe.returncode == 0


SANDBOX = """\
set -e
{lo_up}
"$PY" -m batchpilot emulate --port 0 --allow-unknown-models {scenario} --log "$WORK/emulator.jsonl" > "$WORK/emu.out" 2> "$WORK/emu.err" &
EMU=$!
trap 'kill $EMU' EXIT
i=0; while [ ! -s "$WORK/emu.out" ]; do i=$((i+1)); [ $i -gt 200 ] && exit 90; sleep 0.05; done
export ANTHROPIC_BASE_URL="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$WORK/emu.out")"
{body}
"""


def sandbox(work: Path, body: str, scenario: list | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `body` (sh) next to an emulator, inside one network namespace when possible; HOME is throwaway."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    scen = ""
    if scenario is not None:
        (work / "scenario.json").write_text(json.dumps(scenario))
        scen = f'--scenario "{work / "scenario.json"}"'
    isolated = netns_available()
    script = SANDBOX.format(lo_up=f'"$PY" -c "{LO_UP}"' if isolated else "", scenario=scen, body=body)
    (work / "sandbox.sh").write_text(script)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    full_env.update(CLAUDE_ENV, HOME=str(home), PY=sys.executable, WORK=str(work), **(env or {}))
    cmd = (["unshare", "-n"] if isolated else []) + ["sh", str(work / "sandbox.sh")]
    return subprocess.run(cmd, env=full_env, cwd=work, capture_output=True, text=True, timeout=timeout)


def requests_logged(work: Path) -> list[dict]:
    path = work / "emulator.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------------------------- result interpretation


def call(data, code: int = 0, timed_out: bool = False) -> Call:
    return Call(code, json.dumps(data) if isinstance(data, dict) else data, "", timed_out, 0.1)


BASE = {"type": "result", "subtype": "success", "is_error": False, "total_cost_usd": 0.01,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0, "server_tool_use": {"web_search_requests": 0}}}


@pytest.mark.parametrize("data, code, want", [
    (dict(BASE, result=json.dumps(VALID), structured_output=VALID), 0, ("succeeded", None)),
    # no structured_output key although is_error is false: the model never called the tool
    (dict(BASE, result="I reviewed it, all fine."), 0, ("succeeded", None)),
    (dict(BASE, subtype="error_max_structured_output_retries", is_error=True,
          errors=["Failed to provide valid structured output after 5 attempts"]), 1, ("errored", "structured_output_error")),
    (dict(BASE, is_error=True, api_error_status=529, result="API Error: 529 overloaded"), 1, ("errored", "overloaded_error")),
    (dict(BASE, is_error=True, api_error_status=400, result="API Error: 400 bad"), 1, ("errored", "invalid_request_error")),
    ("Segmentation fault", 139, ("errored", "cli_error")),
])
def test_interpret(data, code, want):
    result, cost, logged_out = interpret(call(data, code), 600)
    assert not logged_out and result["type"] == want[0]
    if want[1]:
        assert result["error"]["error"]["type"] == want[1]
    if isinstance(data, dict):
        assert cost == 0.01 and result["usage"] == {k: v for k, v in BASE["usage"].items() if isinstance(v, int)}
    if isinstance(data, dict) and "structured_output" not in data and result["type"] == "succeeded":
        assert result["output"] == "I reviewed it, all fine."


def test_interpret_timeout_and_not_logged_in():
    result, _, _ = interpret(call("", None, timed_out=True), 5)
    assert result["error"]["error"]["type"] == "timeout_error" and "5 s" in result["error"]["error"]["message"]
    assert interpret(call(dict(BASE, is_error=True, result="Not logged in · Please run /login"), 1), 5)[2] is True


# ------------------------------------------------------------------------------- the pool, with a stand-in claude

FAKE = """\
#!{python}
import json, sys, time, os
argv = sys.argv[1:]
assert argv[:3] == ["-p", "--output-format", "json"] and "--json-schema" in argv, argv
prompt = sys.stdin.read()
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps({{"argv": argv, "prompt_bytes": len(prompt)}}) + "\\n")
if "record 3 " in prompt and os.environ.get("FAKE_SLOW"):
    time.sleep(30)
if os.environ.get("FAKE_LOGGED_OUT"):
    print(json.dumps({{"type": "result", "is_error": True, "result": "Not logged in · Please run /login"}}))
    sys.exit(1)
out = {{"label": "good", "score": len(prompt)}}
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "result": json.dumps(out),
                  "structured_output": out, "total_cost_usd": 0.01, "usage": {{"input_tokens": 7, "output_tokens": 3}}}}))
"""


@pytest.fixture
def fake_claude(tmp_path, monkeypatch):
    path = tmp_path / "fake-claude"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "fake.jsonl"))
    return path


def fake_calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "fake.jsonl"
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


def test_headless_pool_records_resumes_and_uses_stdin(bp, tmp_path, fake_claude, monkeypatch):
    run = prepare(bp, tmp_path, n=6)
    monkeypatch.setenv("BATCHPILOT_CLAUDE", str(fake_claude))
    r = bp("headless", run, "--parallel", "3", "--model", "stub-model")
    assert r.code == 0, r.stderr
    assert r.receipt["counts"] == {"succeeded": 6, "invalid": 0, "errored": 0} and r.receipt["cost_usd"] == 0.06
    calls = fake_calls(tmp_path)
    assert len(calls) == 6
    assert all("record" not in " ".join(c["argv"]) for c in calls)  # the item is never on argv
    assert all(c["argv"][c["argv"].index("--model") + 1] == "stub-model" for c in calls)
    records = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    assert {rec["mode"] for rec in records} == {"headless"} and all(rec["attempt"] == 1 for rec in records)
    assert merge_run(run)["counts"]["ok"] == 6
    again = bp("headless", run)
    assert again.receipt["already_done"] == 6 and again.receipt["attempted"] == 0 and len(fake_calls(tmp_path)) == 6


def test_headless_budget_and_timeout(bp, tmp_path, fake_claude, monkeypatch):
    run = prepare(bp, tmp_path, n=8)
    monkeypatch.setenv("FAKE_SLOW", "1")
    r = bp("headless", run, "--claude", fake_claude, "--parallel", "1", "--timeout", "1", "--max-cost", "0.025")
    assert r.code == 0, r.stderr
    assert r.receipt["stopped"] == "budget" and r.receipt["attempted"] == 3 and r.receipt["not_started"] == 5
    r = bp("headless", run, "--claude", fake_claude, "--parallel", "2", "--timeout", "1")
    assert r.receipt["counts"] == {"succeeded": 4, "invalid": 0, "errored": 1}
    assert r.receipt["errors"][0]["id"] == "rec-00003" and r.receipt["errors"][0]["type"] == "timeout_error"
    summary = merge_run(run)
    assert summary["counts"]["ok"] == 7 and summary["counts"]["errored"] == 1


def test_headless_not_logged_in_stops_the_run(bp, tmp_path, fake_claude, monkeypatch):
    run = prepare(bp, tmp_path, n=5)
    monkeypatch.setenv("FAKE_LOGGED_OUT", "1")
    r = bp("headless", run, "--claude", fake_claude, "--parallel", "1")
    assert r.code == 1 and "not logged in" in r.stderr and "Hint:" in r.stderr and "/login" in r.stderr
    assert len(fake_calls(tmp_path)) == 1  # no further item was started
    assert not (run / "results.jsonl").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_headless_without_claude(bp, tmp_path, monkeypatch, how):
    run = prepare(bp, tmp_path, n=2)
    args = ["headless", run]
    if how == "flag":
        args += ["--claude", str(tmp_path / "no-such-claude")]
    else:
        monkeypatch.setenv("BATCHPILOT_CLAUDE", "no-such-claude-binary")
    r = bp(*args)
    assert r.code == 1 and "was not found" in r.stderr and "Hint: install it" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------- the real Claude Code CLI


def test_headless_real_cli_against_emulator(bp, tmp_path):
    claude = require_tool("claude")
    run = prepare(bp, tmp_path, n=5)
    # rec-00003 never calls the StructuredOutput tool; rec-00004 gets a 400.
    scenario = [
        {"when": {"contains": "record 3 "}, "reply": {"text": "Looks fine to me."}},
        {"when": {"contains": "record 4 "}, "reply": {"error": {"status": 400, "type": "invalid_request_error",
                                                               "message": "scripted bad request"}}},
    ]
    body = (f'"$PY" -m batchpilot headless "{run}" --claude "{claude}" --parallel 2 --model claude-haiku-4-5 --bare '
            f'> "$WORK/receipt.json"')
    proc = sandbox(tmp_path, body, scenario)
    assert proc.returncode == 0, proc.stderr + (tmp_path / "emu.err").read_text()
    receipt = json.loads((tmp_path / "receipt.json").read_text())
    assert receipt["counts"] == {"succeeded": 3, "invalid": 1, "errored": 1}, receipt
    assert receipt["cost_usd"] > 0
    errors = {e["id"]: e for e in receipt["errors"]}
    assert errors["rec-00004"]["type"] == "invalid_request_error"
    assert "Looks fine" in errors["rec-00003"]["message"]
    posts = [l for l in requests_logged(tmp_path) if l["method"] == "POST"]
    assert len(posts) == 3 + 2 + 1  # one per valid answer, two for the text-only item (prompt + enforce), one 400
    summary = merge_run(run)
    assert (summary["counts"]["ok"], summary["counts"]["invalid"], summary["counts"]["errored"]) == (3, 1, 1)
    assert summary["usage"]["input_tokens"] > 0


def test_headless_real_cli_default_mode_and_resume(bp, tmp_path):
    claude = require_tool("claude")
    run = prepare(bp, tmp_path, n=2)
    body = (f'"$PY" -m batchpilot headless "{run}" --claude "{claude}" --parallel 2 > "$WORK/r1.json"\n'
            f'"$PY" -m batchpilot headless "{run}" --claude "{claude}" > "$WORK/r2.json"')
    # Least privilege: a request that offers a tool beyond Read gets a text answer, which would not succeed.
    offered = [{"when": {"tool": tool}, "reply": {"text": f"{tool} was offered"}}
               for tool in ("Bash", "Edit", "Write", "WebFetch", "WebSearch")]
    proc = sandbox(tmp_path, body, offered)
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads((tmp_path / f).read_text()) for f in ("r1.json", "r2.json"))
    assert first["counts"]["succeeded"] == 2 and second["attempted"] == 0 and second["already_done"] == 2
    assert merge_run(run)["counts"]["ok"] == 2


def test_headless_real_cli_not_logged_in(bp, tmp_path):
    claude = require_tool("claude")
    run = prepare(bp, tmp_path, n=3)
    body = f'unset ANTHROPIC_API_KEY\n"$PY" -m batchpilot headless "{run}" --claude "{claude}" --parallel 1 --bare'
    proc = sandbox(tmp_path, body)
    assert proc.returncode == 1
    assert "Error: claude is not logged in" in proc.stderr and "Hint:" in proc.stderr
    assert not (run / "results.jsonl").exists()


def test_headless_lets_claude_read_a_document_item_where_it_lies(bp, tmp_path, fake_claude, monkeypatch):
    import media_samples

    folder = tmp_path / "elsewhere" / "scans"
    folder.mkdir(parents=True)
    (folder / "contract.pdf").write_bytes(media_samples.pdf(2))
    (folder / "note.txt").write_text("a text item needs no file access\n")
    assert bp("prepare", "-t", "summarize", "-i", str(folder), "--mode", "headless", "--run", "r").code == 0
    monkeypatch.setenv("BATCHPILOT_CLAUDE", str(fake_claude))
    r = bp("headless", "r")
    assert r.code == 0, r.stderr
    argv = {("--add-dir" in c["argv"]): c["argv"] for c in fake_calls(tmp_path)}
    assert set(argv) == {True, False}  # the PDF's call only
    document = argv[True]
    assert document[document.index("--add-dir") + 1] == str(folder.resolve())
    assert document[document.index("--allowedTools") + 1] == "Read"


def test_headless_real_cli_reads_a_pdf_outside_its_working_directory(bp, tmp_path):
    claude = require_tool("claude")
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "contract.pdf").write_bytes(__import__("media_samples").pdf(2))
    run = tmp_path / "r"
    assert bp("prepare", "-t", "summarize", "-i", str(folder), "--mode", "headless", "--run", str(run)).code == 0
    read = {"name": "Read", "input": {"file_path": str(folder / "contract.pdf")}}
    scenario = [{"when": {"turn": "prompt"}, "reply": {"tool_use": read}, "once": True}]
    body = (f'cd "$WORK/home" && "$PY" -m batchpilot headless "{run}" --claude "{claude}" --model claude-haiku-4-5 '
            f'--bare > "$WORK/receipt.json"')
    proc = sandbox(tmp_path, body, scenario)
    assert proc.returncode == 0, proc.stderr + (tmp_path / "emu.err").read_text()
    posts = [l for l in requests_logged(tmp_path) if l["method"] == "POST"]
    assert len(posts) == 2
    # The turn after the Read carries the PDF's 2 pages (2,250 tokens each); a refused Read carries a short error.
    grown = posts[1]["usage"]["input_tokens"] - posts[0]["usage"]["input_tokens"]
    assert grown > 2 * 2_000, grown
