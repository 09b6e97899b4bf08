"""The shim `scripts/batchpilot`: it runs from any directory and from paths with spaces, and on a Python without
the dependencies it installs them once into a private virtual environment and reuses it afterwards.

The first install downloads anthropic, click and jsonschema from PyPI (10-20 s); it happens once per test
session (`first_install`), and the other tests here and in test_packaging.py reuse that environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import SAMPLES, SHIM, SKILL_DIR

INSTALL_LINE = "batchpilot: installing"
DEPENDENCIES = ("anthropic", "click", "jsonschema")
# Variables that would change which Python or which environment the shim picks.
SHIM_VARIABLES = ("CLAUDE_PLUGIN_DATA", "XDG_CACHE_HOME", "BATCHPILOT_SHIM_VENV", "PYTHONPATH", "PYTHONHOME",
                  "VIRTUAL_ENV", "PYTHONSTARTUP")


def shim_env(**extra: str) -> dict[str, str]:
    """The environment without anything that steers the shim, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SHIM_VARIABLES}
    env.update(extra)
    return env


def run(args: list, *, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run([str(a) for a in args], env=env or shim_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return done, time.perf_counter() - started


def receipt(done: subprocess.CompletedProcess) -> dict:
    value = json.loads(done.stdout)
    assert isinstance(value, dict), done.stdout
    return value


def copy_skill(dest: Path) -> Path:
    """A copy of the skill folder as an install would lay it down (no caches, no build leftovers)."""
    shutil.copytree(SKILL_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    return dest


@dataclass
class FirstInstall:
    bare_python: Path  # a Python without the dependencies
    data: Path  # $CLAUDE_PLUGIN_DATA of the first call
    venv: Path  # the private environment the shim created there
    code: int
    stdout: str
    stderr: str
    seconds: float


def _first_install(base: Path) -> FirstInstall:
    # Memoised on disk, not in memory: this module may be imported twice (as a test module and from
    # test_packaging.py), and a second first call would find the environment already made.
    record = base / "first-call.json"
    if record.exists():
        saved = json.loads(record.read_text())
        return FirstInstall(**{k: Path(v) if k in ("bare_python", "data", "venv") else v for k, v in saved.items()})
    base.mkdir(parents=True, exist_ok=True)
    bare = base / "bare"
    # A fresh venv sees none of the test environment's packages: the dependencies are missing there, as on a
    # machine that has only python3. The shim's own `-m venv` then runs from it, as it would from python3.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    bare_python = bare / "bin" / "python"
    data = base / "plugin data"
    done, seconds = run([bare_python, SHIM, "--help"], env=shim_env(CLAUDE_PLUGIN_DATA=str(data)), cwd=base)
    venvs = sorted(p for p in data.glob("venv-*") if p.is_dir()) if data.exists() else []
    # Recorded even when it failed, so the tests report one failure each instead of installing again.
    code = done.returncode if len(venvs) == 1 else -1
    stderr = done.stderr if len(venvs) == 1 else f"expected one private venv in {data}, found {venvs}\n{done.stderr}"
    first = FirstInstall(bare_python, data, venvs[0] if venvs else data / "venv-missing", code, done.stdout, stderr, seconds)
    record.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(first).items()}))
    return first


def first_install(tmp_path_factory: pytest.TempPathFactory) -> FirstInstall:
    """The shim's first call on a Python without the dependencies, made once per session."""
    return _first_install(tmp_path_factory.getbasetemp() / "shim-first-install")


# --- a Python that already has the dependencies ---------------------------------------------------------------


def test_shim_runs_from_another_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown, _ = run([sys.executable, SHIM, "--help"], cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert "Commands:" in shown.stdout and "plan" in shown.stdout

    items = f"{SAMPLES}/*.py"
    planned, _ = run([sys.executable, SHIM, "plan", "--template", "code-review", "--items", items], cwd=elsewhere)
    assert planned.returncode == 0, planned.stderr
    got = receipt(planned)
    assert got["command"] == "plan"
    assert got["items"] == len(list(SAMPLES.glob("*.py")))
    assert list(elsewhere.iterdir()) == [], "plan must write nothing"


def test_shim_runs_from_a_path_with_spaces_and_uses_its_own_package(tmp_path):
    skill = copy_skill(tmp_path / "with space" / "batch-processing")
    shim = skill / "scripts" / "batchpilot"
    # Executed directly, as SKILL.md tells the agent to: the shebang's python3 is the one with the dependencies.
    env = shim_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    shown, _ = run([shim, "--help"], env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Commands:" in shown.stdout

    items = f"{skill}/samples/python-app/*.py"
    planned, _ = run([shim, "plan", "--template", "code-review", "--items", items], env=env, cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    got = receipt(planned)
    assert got["items"] == len(list((skill / "samples" / "python-app").glob("*.py")))
    # The suggested next command must survive a shell: the path with a space stays one argument.
    if got.get("next"):
        assert items in shlex.split(got["next"])

    # The copy runs its own package, not the one installed in the test environment.
    traced, _ = run([sys.executable, "-v", shim, "--help"], cwd=tmp_path)
    assert traced.returncode == 0
    assert str(skill / "batchpilot" / "cli" / "main.py") in traced.stderr
    assert str(SKILL_DIR / "batchpilot" / "cli" / "main.py") not in traced.stderr


# --- a Python without the dependencies ---------------------------------------------------------------------------


def test_first_call_installs_the_dependencies_once_and_says_so_in_one_line(tmp_path_factory):
    first = first_install(tmp_path_factory)
    assert first.code == 0, first.stderr
    assert "Commands:" in first.stdout and "plan" in first.stdout
    lines = first.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got:\n{first.stderr}"
    assert lines[0].startswith(INSTALL_LINE)
    assert all(dep in lines[0] for dep in DEPENDENCIES)
    assert str(first.data) in lines[0]
    assert first.venv.parent == first.data
    check = subprocess.run([str(first.venv / "bin" / "python"), "-c", "import anthropic, click, jsonschema"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_later_calls_reuse_the_private_environment(tmp_path_factory, tmp_path):
    first = first_install(tmp_path_factory)
    assert first.code == 0, first.stderr
    before = {p: p.stat().st_mtime_ns for p in [first.venv, *first.venv.iterdir()]}
    items = f"{SAMPLES}/*.py"
    done, _ = run([first.bare_python, SHIM, "plan", "--template", "code-review", "--items", items],
                  env=shim_env(CLAUDE_PLUGIN_DATA=str(first.data)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert receipt(done)["command"] == "plan"
    assert INSTALL_LINE not in done.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before, "the private environment was touched again"
    assert sorted(first.data.glob("venv-*")) == [first.venv]
    # Reuse is one re-run, straight into the private environment: two interpreters start (PYTHONVERBOSE is
    # inherited, and each prints its first import), and the second takes its dependencies from that environment.
    # How long a reusing call takes is a figure: bench/bench_startup.py's plan_10_private_venv.
    traced, _ = run([first.bare_python, SHIM, "--help"], cwd=tmp_path,
                    env=shim_env(CLAUDE_PLUGIN_DATA=str(first.data), PYTHONVERBOSE="1"))
    assert traced.returncode == 0, traced.stderr[-3000:]
    assert "Commands:" in traced.stdout and INSTALL_LINE not in traced.stderr
    assert len(re.findall(r"^import _frozen_importlib # frozen$", traced.stderr, re.M)) == 2, traced.stderr[-3000:]
    # (the bytecode may sit under a pycache prefix: the venv's path is then inside the cached file's path)
    assert re.search(rf"^# code object from '?\S*{re.escape(str(first.venv))}\S*click", traced.stderr, re.M), \
        "click was not imported from the private environment"


def test_without_plugin_data_the_environment_lives_in_the_user_cache(tmp_path_factory, tmp_path):
    first = first_install(tmp_path_factory)
    assert first.code == 0, first.stderr
    cache = tmp_path / "xdg cache"
    (cache / "batch-processing").mkdir(parents=True)
    # The ready environment from the first install, placed where the shim must look without CLAUDE_PLUGIN_DATA.
    (cache / "batch-processing" / first.venv.name).symlink_to(first.venv, target_is_directory=True)
    # HOME elsewhere: a shim that ignored XDG_CACHE_HOME would install into this empty home and say so.
    home = tmp_path / "home"
    home.mkdir()
    done, _ = run([first.bare_python, SHIM, "--help"], env=shim_env(XDG_CACHE_HOME=str(cache), HOME=str(home)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Commands:" in done.stdout
    assert not (home / ".cache").exists()


def test_a_broken_private_environment_fails_with_a_hint(tmp_path_factory, tmp_path):
    first = first_install(tmp_path_factory)
    assert first.code == 0, first.stderr
    data = tmp_path / "data"
    venv = data / first.venv.name
    # Marked ready but empty (e.g. its packages were deleted): the shim must not loop or show a traceback.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    for stamp in first.venv.glob(".*"):
        if stamp.is_file():
            shutil.copy(stamp, venv / stamp.name)
    done, _ = run([first.bare_python, SHIM, "--help"], env=shim_env(CLAUDE_PLUGIN_DATA=str(data)), cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Error:" in done.stderr and "Hint:" in done.stderr
    assert str(data) in done.stderr, "the hint should name the directory to delete"


@lru_cache(maxsize=None)
def _can_unshare_network() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def test_an_offline_first_call_fails_with_a_hint_and_the_next_call_retries(tmp_path_factory, tmp_path):
    if not _can_unshare_network():
        pytest.skip("needs `unshare -n` (a network namespace) to simulate a machine without network")
    first = first_install(tmp_path_factory)
    assert first.code == 0, first.stderr
    data = tmp_path / "data"
    # No network, pip's own configuration ignored (it could name a local mirror that works offline), and no
    # retries, so pip fails at once instead of backing off.
    env = {k: v for k, v in shim_env(CLAUDE_PLUGIN_DATA=str(data)).items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_RETRIES="0", PIP_TIMEOUT="2", PIP_NO_CACHE_DIR="1")
    for attempt in (1, 2):
        done, _ = run(["unshare", "-n", first.bare_python, SHIM, "--help"], env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 1, done.stderr
        # Call 2 must try again (not reuse the half-made environment of call 1), so it says it installs.
        assert done.stderr.startswith(INSTALL_LINE), f"attempt {attempt}:\n{done.stderr}"
        error = done.stderr[done.stderr.index("Error:"):]
        assert "Hint:" in error and "Traceback" not in error
