"""A second real client: the Claude Code CLI, headless (`claude -p`), completes runs against the emulator.

Everything runs inside `unshare -n` when the machine allows it (only loopback exists, nothing can leave), so
the emulator is started as a subprocess by a small driver inside the same namespace. The CLI comes from
BATCHPILOT_TOOL_BIN (set by tests/run.py) or PATH; when CI is set a missing CLI is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
          "required": ["answer", "confidence"], "additionalProperties": False}
CASES = [
    ["-p", "Say hi", "--output-format", "json"],  # default (non-bare): 24 tools, a system-role message
    ["-p", "Say hi", "--output-format", "json", "--bare", "--json-schema", json.dumps(SCHEMA)],
    ["-p", "Say hi", "--output-format", "json", "--json-schema", json.dumps(SCHEMA)],
]

DRIVER = textwrap.dedent('''
    import json, os, subprocess, sys
    python, claude, home, log, cases = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
    emu = subprocess.Popen([python, "-m", "batchpilot", "emulate", "--port", "0", "--log", log],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = json.loads(emu.stdout.readline())["base_url"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "ANTHROPIC_BASE_URL": base,
           "ANTHROPIC_API_KEY": "dummy", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "CLAUDE_CODE_MAX_RETRIES": "0"}
    runs = []
    for args in cases:
        try:
            done = subprocess.run([claude, *args], env=env, cwd=home, capture_output=True, text=True, timeout=120)
            runs.append({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-2000:]})
        except subprocess.TimeoutExpired:
            runs.append({"rc": None, "stdout": "", "stderr": "timed out"})
    emu.terminate()
    emu_err = emu.communicate(timeout=15)[1]
    print(json.dumps({"emulator_rc": emu.returncode, "emulator_stderr": emu_err[-2000:], "runs": runs}))
''')


def find_claude() -> str | None:
    tool_bin = os.environ.get("BATCHPILOT_TOOL_BIN")
    if tool_bin and (Path(tool_bin) / "claude").exists():
        return str(Path(tool_bin) / "claude")
    return shutil.which("claude")


def isolation() -> list[str]:
    """The command prefix that gives a private network namespace with loopback up, or [] when unavailable."""
    if not shutil.which("unshare"):
        return []
    for flags in (["-n"], ["-rn"]):
        probe = subprocess.run(["unshare", *flags, "sh", "-c", "ip link set lo up 2>/dev/null; true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", *flags, "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$0" "$@"']
    return []


def test_claude_code_cli_runs_plain_and_with_json_schema(tmp_path):
    claude = find_claude()
    if claude is None:
        if os.environ.get("CI"):
            pytest.fail("the Claude Code CLI is missing: tests/run.py installs it under .tools/ (needs npm)")
        pytest.skip("the Claude Code CLI is not installed (set BATCHPILOT_TOOL_BIN or put `claude` on PATH)")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "emulator.jsonl"
    command = [*isolation(), sys.executable, str(driver), sys.executable, claude, str(home), str(log), json.dumps(CASES)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["emulator_rc"] == 0 and "Traceback" not in report["emulator_stderr"]
    outputs = []
    for args, run in zip(CASES, report["runs"]):
        assert run["rc"] == 0, (args, run)
        result = json.loads(run["stdout"])
        assert result["type"] == "result" and result["is_error"] is False and result["subtype"] == "success"
        outputs.append(result)
    assert outputs[0]["result"] and "structured_output" not in outputs[0]
    for structured in outputs[1:]:
        jsonschema.validate(structured["structured_output"], SCHEMA)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    posts = [l for l in lines if l["path"] == "/v1/messages"]
    assert len(posts) >= len(CASES) and all(l["status"] == 200 for l in posts)
    assert all(l["status"] < 500 for l in lines)
