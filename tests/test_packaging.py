"""Packaging: the plugin manifests pass Claude Code's strict validator, the skill passes the Agent Skills
reference validator, and `playbooks add skill` installs the skill folder alone, in a state that runs.

The external tools come from tests/run.py (BATCHPILOT_TOOL_BIN); in CI a missing tool fails the test. They
run with a throwaway HOME, telemetry off, and inside a network namespace when the kernel allows one.
"""

from __future__ import annotations

import ast
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import ROOT, SKILL_DIR, require_tool
from test_shim import first_install, shim_env

SKILL_NAME = "batch-processing"
QUIET_TOOLS = {"DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What `playbooks` leaves out of every folder it copies (its installer's exclusion rule).
PLAYBOOKS_DROPS = re.compile(r"^(_.*|README\.md|metadata\.json)$")


@lru_cache(maxsize=None)
def offline() -> list[str]:
    """A prefix that runs a command without network, when this kernel lets us make a network namespace."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def tool_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_", "ANTHROPIC_", "XDG_"))}
    env.update(QUIET_TOOLS, HOME=str(home))
    return env


# --- Claude Code plugin manifests ---------------------------------------------------------------------------------


def validate_plugin(target: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    claude = require_tool("claude")
    return subprocess.run([*offline(), claude, "plugin", "validate", "--strict", target], cwd=cwd, env=tool_env(home),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("target", [".", "plugin", "plugin/.claude-plugin/plugin.json"])
def test_claude_plugin_validate_strict_passes(target, tmp_path):
    done = validate_plugin(target, ROOT, tmp_path / "home")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation passed" in done.stdout


@pytest.mark.parametrize("target", ["plugin", "plugin/.claude-plugin/plugin.json"])
def test_claude_plugin_validate_rejects_a_broken_manifest(target, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / ".claude-plugin", repo / ".claude-plugin")
    shutil.copytree(ROOT / "plugin" / ".claude-plugin", repo / "plugin" / ".claude-plugin")
    manifest = repo / "plugin" / ".claude-plugin" / "plugin.json"
    data = json.loads(manifest.read_text())
    data["name"] = "Batch Processing"  # not kebab-case
    manifest.write_text(json.dumps(data))
    done = validate_plugin(target, repo, tmp_path / "home")
    assert done.returncode != 0, done.stdout
    assert "name" in done.stdout + done.stderr


def test_manifests_agree_on_the_name_and_source():
    plugin = json.loads((ROOT / "plugin" / ".claude-plugin" / "plugin.json").read_text())
    market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    assert plugin["name"] == SKILL_NAME == SKILL_DIR.name
    [entry] = market["plugins"]
    assert entry["name"] == plugin["name"]
    # The plugin is its own folder, so an install copies no tests, benchmarks or virtualenvs (test_install.py);
    # its skill is a link to the one skill folder.
    assert entry["source"] == "./plugin"
    assert (ROOT / "plugin" / "skills" / SKILL_NAME).resolve() == SKILL_DIR
    # `/plugin install batch-processing@batch-processing` (README) names the plugin @ the marketplace.
    assert market["name"] == SKILL_NAME


# --- Agent Skills reference validator -----------------------------------------------------------------------------


def agentskills(skill: Path) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).parent / "agentskills"
    if not tool.exists():
        tool = Path(require_tool("agentskills"))
    return subprocess.run([str(tool), "validate", str(skill)], capture_output=True, text=True, timeout=60)


def test_agentskills_validate_passes():
    done = agentskills(SKILL_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid skill" in done.stdout


def test_agentskills_validate_rejects_a_bad_name(tmp_path):
    skill = tmp_path / SKILL_NAME
    shutil.copytree(SKILL_DIR, skill, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    text = (skill / "SKILL.md").read_text()
    (skill / "SKILL.md").write_text(re.sub(r"(?m)^name: .*$", "name: Batch_Processing", text, count=1))
    done = agentskills(skill)
    assert done.returncode != 0, done.stdout
    assert "name" in (done.stdout + done.stderr).lower()


# --- playbooks add skill --------------------------------------------------------------------------------------------


def run_in_terminal(cmd: list[str], cwd: Path, env: dict, timeout: float = 120) -> tuple[int, str]:
    """Run an interactive (Ink) CLI in a pseudo-terminal and press q on its final screen.

    playbooks needs a terminal and, even with -y, ends on a menu. q is pressed as soon as the install-results
    screen shows, or after 5 quiet seconds on any screen that offers q (an error or a selection prompt).
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    raw, quit_sent = b"", False
    started = last_output = time.monotonic()
    try:
        while time.monotonic() - started < timeout and proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    raw += os.read(master, 65536)
                except OSError:  # the terminal closed: the program ended
                    break
                last_output = time.monotonic()
            screen = ANSI.sub("", raw.decode("utf-8", "replace"))
            final = "Install results" in screen
            stuck = "q/esc to quit" in screen and time.monotonic() - last_output > 5
            if not quit_sent and (final or stuck):
                time.sleep(0.5)  # let the screen settle before the key press
                os.write(master, b"q")
                quit_sent = True
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    finally:
        os.close(master)
    return code, ANSI.sub("", raw.decode("utf-8", "replace"))


def repository_clone_source(dest: Path) -> Path:
    """The working tree as a git repository holding what a commit would hold (honours .gitignore)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", ".venv", ".venv-*", ".tools", "node_modules",
                                                              "__pycache__", ".pytest_cache", ".batchpilot"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "snapshot"]):
        subprocess.run([*git, *args], cwd=dest, env=env, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def playbooks_install(tmp_path_factory):
    """`playbooks add skill <clone URL> --skill batch-processing -a claude-code -y` into a fresh project.

    A file:// URL takes the same path as OWNER/REPO (a shallow git clone, then skill discovery that honours
    .claude-plugin/marketplace.json), without the network.
    """
    playbooks = require_tool("playbooks")
    require_tool("git")  # playbooks clones with it
    base = tmp_path_factory.mktemp("playbooks")
    source = repository_clone_source(base / "repo")
    project = base / "project"
    project.mkdir()
    env = tool_env(base / "home")
    # Ink (playbooks' UI) renders nothing until exit when it thinks it runs in CI, so the result screen the
    # harness waits for would never show: run it as in a user's terminal.
    env = {k: v for k, v in env.items() if k not in ("CI", "CONTINUOUS_INTEGRATION") and not k.startswith("CI_")}
    (base / "tmp").mkdir()
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", TMPDIR=str(base / "tmp"))  # it clones into TMPDIR
    cmd = [*offline(), playbooks, "add", "skill", source.as_uri(), "--skill", SKILL_NAME, "-a", "claude-code", "-y"]
    code, screen = run_in_terminal(cmd, project, env)
    tracked = subprocess.run(["git", "ls-files", f"skills/{SKILL_NAME}"], cwd=source, capture_output=True, text=True,
                             check=True).stdout.split()
    return {"code": code, "screen": screen, "project": project, "source": source,
            "installed": project / ".claude" / "skills" / SKILL_NAME,
            "skill_files": {Path(p).relative_to(f"skills/{SKILL_NAME}").as_posix() for p in tracked}}


def test_playbooks_installs_the_skill_folder_alone(playbooks_install):
    got = playbooks_install
    assert got["code"] == 0, got["screen"][-2000:]
    assert "Installed 1 skill" in got["screen"], got["screen"][-2000:]
    installed: Path = got["installed"]
    assert (installed / "SKILL.md").is_file(), f"nothing at {installed}:\n{got['screen'][-2000:]}"
    assert (installed / "SKILL.md").read_text() == (got["source"] / "skills" / SKILL_NAME / "SKILL.md").read_text()
    for needed in ("batchpilot", "templates", "references"):
        assert (installed / needed).is_dir(), needed
    shim = installed / "scripts" / "batchpilot"
    assert shim.is_file() and os.access(shim, os.X_OK)
    files = {p.relative_to(installed).as_posix() for p in installed.rglob("*") if p.is_file()}
    assert files <= got["skill_files"], f"files from outside the skill: {sorted(files - got['skill_files'])}"
    names = {part for f in files for part in Path(f).parts}
    assert not names & {"tests", ".git", "bench", "pyproject.toml", ".claude-plugin"}, names


def test_the_skill_survives_playbooks_dropping_underscore_files():
    """playbooks copies no file whose name starts with "_" (nor README.md, metadata.json): every `__init__.py`
    in the skill must be docstring-only, so the package still imports as a namespace package without them."""
    holding_code = []
    for path in sorted(SKILL_DIR.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file() or not PLAYBOOKS_DROPS.match(path.name):
            continue
        if path.name == "__main__.py":
            continue  # only `python -m batchpilot` needs it; the shim imports batchpilot.cli.main
        if path.suffix != ".py":
            holding_code.append(path.relative_to(SKILL_DIR).as_posix())
            continue
        body = ast.parse(path.read_text()).body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]  # the docstring
        body = [n for n in body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
        if body:
            holding_code.append(path.relative_to(SKILL_DIR).as_posix())
    assert holding_code == [], (
        f"playbooks would drop these files, and they hold content the skill needs: {holding_code}; "
        "move the code into a module with an ordinary name")


def test_playbooks_installed_skill_runs_on_a_fresh_python_from_another_directory(playbooks_install, tmp_path_factory, tmp_path):
    got = playbooks_install
    assert got["code"] == 0 and (got["installed"] / "SKILL.md").is_file(), got["screen"][-2000:]
    # A python3 without the dependencies, as on a user's machine; the shim's private environment from the first
    # install (test_shim.py) holds them, and no other copy of the batchpilot package is importable.
    first = first_install(tmp_path_factory)
    assert first.code == 0, first.stderr
    env = shim_env(CLAUDE_PLUGIN_DATA=str(first.data),
                   PATH=f"{first.bare_python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    shim = got["installed"] / "scripts" / "batchpilot"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = subprocess.run([str(shim), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "Commands:" in shown.stdout and "plan" in shown.stdout

    items = f"{got['installed']}/samples/python-app/*.py"
    planned = subprocess.run([str(shim), "plan", "--template", "code-review", "--items", items], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert json.loads(planned.stdout)["command"] == "plan"


def test_playbooks_installed_skill_runs_its_own_package_beside_another_install(playbooks_install, tmp_path):
    got = playbooks_install
    assert got["code"] == 0 and (got["installed"] / "SKILL.md").is_file(), got["screen"][-2000:]
    # The test environment has this repository's batchpilot installed; the installed skill must not run that one
    # (a namespace package left without __init__.py loses to any installed package unless the shim pins it).
    shim = got["installed"] / "scripts" / "batchpilot"
    traced = subprocess.run([sys.executable, "-v", str(shim), "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    errors = "\n".join(line for line in traced.stderr.splitlines() if not line.startswith(("#", "import ")))
    assert traced.returncode == 0, errors[-3000:]
    assert str(got["installed"].resolve() / "batchpilot" / "cli" / "main.py") in traced.stderr
    assert str(SKILL_DIR / "batchpilot" / "cli" / "main.py") not in traced.stderr
