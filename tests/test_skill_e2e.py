"""The skill inside the real Claude Code CLI: the plugin is loaded with --plugin-dir, the emulator plays the model
with scripted steps, and the agents-mode workflow runs through Claude Code's own Skill, Bash, Agent, Read and
Write tools, in a network namespace when the kernel allows one.

Each scripted step fires only if the request Claude Code sent contains what the step expects, so the chain
proves, in order: (a) the request advertises the skill with its description; (b) the SKILL.md body returned by
the Skill tool has `${CLAUDE_SKILL_DIR}` resolved to this skill's real directory; (c) the agents-mode commands
(`run --mode agents`) runs through the Bash tool and prints the wave; (d) the whole wave goes out as ONE assistant
message holding one Agent call per task (as SKILL.md tells the model to send it), Claude Code runs those calls
as real subagents at the same time, each reads its prompt file and writes its output file, and all their
results come back to the main conversation in one user turn; (e) collect and merge finish the job.

The subagents' steps and the main conversation's are told apart by START, which only the main conversation
contains. Parallelism is read from the emulator's request log (`scenario_step` names the step that answered
each request, lines in the order the answers went out): every subagent's first answer went out before any
subagent's last one, which a one-after-the-other run cannot do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from conftest import ROOT, SAMPLES, SKILL_DIR, require_tool
from test_headless import sandbox

START = "E2E-START"
PLUGIN_DIR = ROOT / "plugin"  # the plugin as installed: its skill is reached through the plugin folder
PLUGIN_SKILL = PLUGIN_DIR / "skills" / "batch-processing"
IDS = ("cart-py", "jobs-py")
OUTPUT = {"summary": "Reviewed by a scripted subagent.", "findings": []}
SUBAGENT_STEPS = 3  # read the prompt file, write the output file, answer done(cid)
WAVE_STEP = SUBAGENT_STEPS * len(IDS) + 2  # after the skill step and the `run --mode agents` step


def done(cid: str) -> str:
    return f"SUBAGENT-DONE {cid}"


def skill_description() -> str:
    text = (SKILL_DIR / "SKILL.md").read_text()
    block = re.search(r"^description:\s*>-?\n((?:[ \t]+.*\n)+)", text, re.M)
    lines = block.group(1).split("\n") if block else [re.search(r"^description:\s*(.*)$", text, re.M).group(1)]
    return " ".join(line.strip() for line in lines if line.strip())


def scenario(run: Path) -> list[dict]:
    tool = f'"{PLUGIN_SKILL}/scripts/batchpilot"'
    steps: list[dict] = []
    for cid in IDS:  # the subagents' steps come first (SUBAGENT_STEPS per task): their conversations never contain START
        follow = f"Follow {run / 'prompts' / (cid + '.md')}"
        out = str(run / "outputs" / f"{cid}.json")
        sub = {"turn": "tool_result", "contains": follow, "not_contains": START, "last_user_contains": out}
        steps += [
            {"when": {"turn": "prompt", "last_user_contains": follow, "not_contains": START},
             "reply": {"tool_use": {"name": "Read", "input": {"file_path": str(run / "prompts" / f"{cid}.md")}}}, "once": True},
            {"when": sub,
             "reply": {"tool_use": {"name": "Write", "input": {"file_path": out, "content": json.dumps(OUTPUT)}}}, "once": True},
            {"when": sub, "reply": {"text": done(cid)}, "once": True},
        ]

    def main(last_user: str | list[str], reply: dict) -> dict:
        return {"when": {"turn": "tool_result", "contains": START, "last_user_contains": last_user}, "reply": reply, "once": True}

    def bash(command: str) -> dict:
        return {"tool_use": {"name": "Bash", "input": {"command": command, "description": "Run batchpilot"}}}

    def agent(cid: str) -> dict:
        return {"name": "Agent", "input": {"description": cid, "prompt": f"Follow {run / 'prompts' / (cid + '.md')}",
                                           "subagent_type": "batch-processing:batch-item", "model": "sonnet"}}

    description = skill_description()[:120]
    steps += [
        # (a) the skill is advertised with its description
        {"when": {"turn": "prompt", "last_user_contains": START, "contains": f"batch-processing: {description}"},
         "reply": {"tool_use": {"name": "Skill", "input": {"skill": "batch-processing:batch-processing"}}}, "once": True},
        # (b) the body came back with the script path resolved; (c) run SKILL.md's agents-mode command
        main(tool, bash(f"{tool} run --template code-review --items 'src/*.py' --mode agents --run .batchpilot/runs/e2e")),
        # (d) the wave's tasks, exactly as run printed them, all in one message (step WAVE_STEP) ...
        # (the receipt names the plugin's worker agent as subagent_type: the Agent calls use it)
        main(['"command": "run"', '"subagent_type": "batch-processing:batch-item"'],
             {"text": "Starting wave 1.", "tool_uses": [agent(cid) for cid in IDS]}),
        # ... and every subagent's result back in one user turn
        main([done(cid) for cid in IDS], bash(f"{tool} collect .batchpilot/runs/e2e")),
        # (e) collect said all done: merge
        # (its `next` repeats the shim's path as the model ran it, through the plugin's folder)
        main(f'"next": "{PLUGIN_SKILL}/scripts/batchpilot merge', bash(f"{tool} merge .batchpilot/runs/e2e")),
        main('"command": "merge"', {"text": "E2E-FINISHED"}),
        {"when": {}, "reply": {"text": "E2E-STUCK"}},
    ]
    return steps


def test_agents_mode_through_the_real_claude_code(tmp_path):
    claude = require_tool("claude")
    skill_text = (SKILL_DIR / "SKILL.md").read_text()
    for command in ("batchpilot run --template T --items SRC --mode agents", "batchpilot collect RUN", "batchpilot merge RUN"):
        assert command in skill_text, f"the scripted model runs `{command}`, which SKILL.md must give"
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    for cid in IDS:
        name = cid.replace("-py", ".py")
        shutil.copy(SAMPLES / name, project / "src" / name)
    run = project / ".batchpilot" / "runs" / "e2e"
    # The shim must find a python3 that has the dependencies: the test's own (offline, no venv to build).
    body = (f'export PATH="{Path(sys.executable).parent}:$PATH"\n'
            f'cd "{project}"\n'
            f'"{claude}" -p "{START} review the Python files in src/ with the batch-processing skill, agents mode" '
            f'--plugin-dir "{PLUGIN_DIR}" --output-format json --allowedTools Bash Read Write Agent Skill '
            f'--max-turns 20 > "$WORK/claude.json"')
    proc = sandbox(tmp_path, body, scenario(run), timeout=150)
    result = (tmp_path / "claude.json").read_text() if (tmp_path / "claude.json").exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + result[-2000:]
    final = json.loads(result)
    assert final["result"] == "E2E-FINISHED", final  # every scripted step matched, in order
    for cid in IDS:
        assert json.loads((run / "outputs" / f"{cid}.json").read_text()) == OUTPUT
        assert (run / "prompts" / f"{cid}.md").is_file()
    records = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    assert sorted(r["custom_id"] for r in records) == sorted(IDS) and {r["mode"] for r in records} == {"agents"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["ok"] == 2 and summary["items"] == 2
    merged = [json.loads(l) for l in (run / "merged.jsonl").read_text().splitlines()]
    assert [m["output"] for m in merged] == [OUTPUT, OUTPUT]
    log = [json.loads(l) for l in (tmp_path / "emulator.jsonl").read_text().splitlines()]
    fired = [e["scenario_step"] for e in log if e["method"] == "POST" and e.get("scenario_step") is not None]
    assert fired.count(WAVE_STEP) == 1 and fired.count(WAVE_STEP + 1) == 1  # one wave message, one turn of results
    subagents = [[SUBAGENT_STEPS * i + k for k in range(SUBAGENT_STEPS)] for i in range(len(IDS))]
    for own in subagents:
        assert [step for step in fired if step in own] == own  # each subagent: read, write, done, in order
    assert fired.index(WAVE_STEP) < min(fired.index(own[0]) for own in subagents)
    # In parallel: every subagent's first answer went out before any subagent's last one.
    assert max(fired.index(own[0]) for own in subagents) < min(fired.index(own[-1]) for own in subagents), fired
    assert max(fired.index(own[-1]) for own in subagents) < fired.index(WAVE_STEP + 1)
    assert os.environ.get("ANTHROPIC_BASE_URL", "").startswith("http://127.0.0.1")  # the test itself stayed isolated
