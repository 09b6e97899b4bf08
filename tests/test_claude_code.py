"""The skill as Claude Code's Bash tool meets it: no `batchpilot` on PATH, a working directory that is not the
skill's, no API key. Every command a receipt suggests runs exactly as printed; a rehearsal says it is one in
every receipt and file; a run remembers its mode and whether it is emulated; `runs` and the plugin's
SessionStart hook bring back a run left waiting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, SHIM

FILES = ("cart.py", "jobs.py", "text_utils.py")
OUTPUT = {"summary": "Reviewed.", "findings": []}


@pytest.fixture
def shell(tmp_path):
    """A Bash as Claude Code's: PATH holds a python3 with the dependencies and no `batchpilot`; runs in `cwd`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    assert shutil.which("batchpilot", path=env["PATH"]) is None

    def run(command: str, cwd: Path, text_out: bool = False) -> tuple[int, dict | str | None, str]:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        if text_out:
            return done.returncode, done.stdout, done.stderr
        try:
            receipt = json.loads(done.stdout)
        except ValueError:
            receipt = None
        return done.returncode, receipt, done.stderr

    return run


@pytest.fixture
def project(tmp_path):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    for name in FILES:
        shutil.copy(SAMPLES / name, project / "src" / name)
    (tmp_path / "elsewhere").mkdir()
    return project


def shell_text(shell, command: str, cwd: Path) -> tuple[int, str, str]:
    return shell(command, cwd, text_out=True)


def follow(shell, receipt: dict, cwd: Path, seen: list[str], limit: int = 8) -> dict:
    """Run each receipt's `next` as printed, from `cwd`, until none is suggested or it repeats."""
    for _ in range(limit):
        nxt = receipt.get("next")
        if not nxt or " report " in f"{nxt} ":
            return receipt
        code, got, err = shell(nxt, cwd)
        assert code == 0 and got is not None, f"`{nxt}` failed ({code}): {err[-2000:]}"
        seen.append(got["command"])
        receipt = got
    return receipt


def test_agents_workflow_runs_as_printed_from_another_directory(shell, project):
    elsewhere = project.parent / "elsewhere"
    quoted = f'"{SHIM}"'
    code, plan, err = shell(f"{quoted} plan --template code-review --items 'src/*.py'", project)
    assert code == 0, err
    assert plan["recommended"]["mode"] == "agents"  # no key: the mode that does real work here
    code, prepared, err = shell(plan["next"], elsewhere)
    assert code == 0 and prepared["command"] == "prepare" and prepared["items"] == len(FILES), err
    assert Path(prepared["run"]).is_absolute() and Path(prepared["run"]).parent.parent == project / ".batchpilot"
    code, fanout, err = shell(prepared["next"], elsewhere)
    assert code == 0 and fanout["command"] == "fanout", err
    run = Path(fanout["run"])
    for task in fanout["tasks"]:  # the subagents' part: write each output file
        (run / "outputs" / f"{task['id']}.json").write_text(json.dumps(OUTPUT))
    seen: list[str] = []
    last = follow(shell, fanout, elsewhere, seen)
    assert seen == ["collect", "merge"] and last["counts"]["ok"] == len(FILES)
    code, report, err = shell(last["next"], elsewhere)
    assert code == 0 and report["command"] == "report", err
    assert last["emulated"] is False and "Emulated" not in (run / "report.md").read_text()


def session_start_hook() -> str:
    """The plugin's SessionStart hook command, with ${CLAUDE_PLUGIN_ROOT} as Claude Code sets it."""
    [entry] = json.loads((ROOT / "plugin" / "hooks" / "hooks.json").read_text())["hooks"]["SessionStart"]
    assert set(entry["matcher"].split("|")) == {"startup", "resume", "compact"}
    return entry["hooks"][0]["command"].replace("${CLAUDE_PLUGIN_ROOT}", str(ROOT / "plugin"))


def test_an_emulated_batch_left_waiting_is_found_again_says_so_everywhere_and_stays_on_the_emulator(shell, project):
    elsewhere = project.parent / "elsewhere"
    code, started, err = shell(f'"{SHIM}" run --template code-review --items "src/*.py" --mode batch --emulate --no-wait',
                               project)
    assert code == 0 and started["emulated"] is True, err
    assert "--emulate" not in started["next"]  # the run remembers it
    # A new session (or one after a compaction): `runs` and the SessionStart hook name the run and its next step.
    code, listed, err = shell(f'"{SHIM}" runs --unfinished', project / "src")  # from a subdirectory too
    assert code == 0, err
    [row] = listed["runs"]
    assert row["run"] == started["run"] and row["emulated"] is True and row["finished"] is False
    assert row["next"] == started["next"] and listed["next"] == started["next"]
    code, hook_out, err = shell_text(shell, session_start_hook(), project)
    # The hook names the shim through the plugin's folder (its skill is a link): the same command from there.
    assert code == 0 and started["run"] in hook_out and started["next"].split(" ", 1)[1] in hook_out, hook_out + err
    assert f'{ROOT / "plugin" / "skills" / "batch-processing" / "scripts" / "batchpilot"} status' in hook_out, hook_out
    assert len(hook_out.splitlines()) <= 3, hook_out
    assert shell_text(shell, session_start_hook(), elsewhere)[1] == ""  # no runs here: the hook says nothing
    # Its commands, as printed, from another directory.
    seen: list[str] = []
    follow(shell, started, elsewhere, seen)
    assert seen[:2] == ["status", "fetch"] and seen[-1] == "merge", seen
    run = Path(started["run"])
    # retry without --emulate: the run's emulator again (there is no key, and the API's address is a closed port)
    code, retried, err = shell(f'"{SHIM}" retry "{run}"', elsewhere)
    assert code == 0 and retried["emulated"] is True, err
    follow(shell, retried, elsewhere, seen)
    assert json.loads((run / "run.json").read_text())["emulated"] is True
    assert json.loads((run / "summary.json").read_text())["emulated"] is True
    merged = [json.loads(line) for line in (run / "merged.jsonl").read_text().splitlines()]
    assert len(merged) == len(FILES) and all(m["emulated"] is True for m in merged)
    code, report, err = shell(f'"{SHIM}" report "{run}"', elsewhere)
    assert code == 0 and report["emulated"] is True, err
    assert "Emulated rehearsal" in (run / "report.md").read_text()
    assert "Emulated rehearsal" in (run / "report.html").read_text()
    code, listed, err = shell(f'"{SHIM}" runs --unfinished', project)
    assert code == 0 and listed["runs"] == [], err
    code, hook_out, err = shell_text(shell, session_start_hook(), project)
    assert code == 0 and hook_out == "", hook_out + err  # nothing unfinished: nothing added to the session


def test_a_real_run_refuses_the_emulator(bp, monkeypatch, emulator):
    emu = emulator()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # the "API" here is an emulator
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    r = bp("prepare", "--template", "code-review", "--items", str(SAMPLES / "cart.py"), "--run", "r")
    assert bp("submit", "r").code == 0
    r = bp("status", "r", "--emulate")  # the batch exists at the API: the emulator cannot stand in for it
    assert r.code == 1 and "runs against the real API" in r.stderr and "Hint:" in r.stderr
    assert json.loads(Path("r/run.json").read_text())["emulated"] is False


def test_submit_on_an_agents_run_refuses_before_any_request(bp, monkeypatch, emulator, tmp_path):
    log = tmp_path / "requests.jsonl"
    emu = emulator(log_path=str(log))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    assert bp("prepare", "--template", "code-review", "--items", f"{SAMPLES}/*.py", "--run", "a", "--mode", "agents").code == 0
    for command in (["submit", "a"], ["submit", "a", "--emulate"], ["status", "a"], ["direct", "a"], ["retry", "a"]):
        r = bp(*command)
        assert r.code == 1, (command, r.stdout)
        assert "is a agents-mode run" in r.stderr.replace("an agents", "a agents") and "collect" not in r.stdout
        assert "Hint:" in r.stderr and "fanout" in r.stderr, r.stderr
    assert not log.exists() or log.read_text() == ""  # no request reached the API
    assert not (tmp_path / "a" / "emulator").exists()


def test_plan_without_a_key_recommends_what_runs_here(bp, monkeypatch, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"t{i}", "text": f"ticket {i} text"}) + "\n" for i in range(1000)))
    monkeypatch.setenv("PATH", str(tmp_path / "no-claude"))
    r = bp("plan", "--template", "summarize", "--items", str(items))
    assert r.code == 0, r.stderr
    assert r.receipt["recommended"]["mode"] == "agents" and "ANTHROPIC_API_KEY" in r.receipt["recommended"]["reason"]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "claude").write_text("#!/bin/sh\nexit 0\n")
    (fake / "claude").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert bp("plan", "--template", "summarize", "--items", str(items)).receipt["recommended"]["mode"] == "headless"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert bp("plan", "--template", "summarize", "--items", str(items)).receipt["recommended"]["mode"] == "batch"


def test_the_direct_display_fits_80_columns_and_ends_on_the_final_count(tmp_path):
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"t{i}", "text": f"ticket {i}"}) + "\n" for i in range(40)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    cmd = [sys.executable, str(SHIM), "run", "-t", "summarize", "-i", str(items), "--mode", "direct", "--emulate",
           "--run", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    raw = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            raw += chunk
        elif proc.poll() is not None:
            break
    receipt = json.loads(proc.stdout.read())
    assert proc.wait(timeout=60) == 0
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode("utf-8", "replace"))
    frames = [f for line in text.replace("\r\n", "\n").split("\n") for f in line.split("\r") if f]
    bars = [f for f in frames if f.startswith("[")]  # the redrawn frames (stage lines are printed once and may wrap)
    assert bars and max(len(f) for f in bars) <= 79, max(bars, key=len)
    finished = [f for f in bars if " 40/40 " in f]
    assert finished and "40 ok" in finished[0] and "retries" in finished[0], bars[-3:]
    assert receipt["counts"]["ok"] == 40
