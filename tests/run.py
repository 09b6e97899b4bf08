#!/usr/bin/env python3
"""Run the whole test suite: `python3 tests/run.py [pytest args]`.

Needs only `python3` (>= 3.10) and access to the package registries. It prepares, once, and reuses:

* `.venv/`       the project installed in editable mode with its test tools;
* `.venv-sdk1/`  the 1.x `anthropic` SDK, so the emulator is tested against both SDK generations;
* `.tools/`      the npm tools the tests drive (the Claude Code CLI, `playbooks` and `sarif-multitool`), when `npm` exists.

Then it runs pytest in `.venv`. A run that executes no test fails. `bench/run_all.py` prepares `.venv/` with
`ensure_project_venv` from here, so the tests and the benchmarks share one environment.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKILL = ROOT / "skills" / "batch-processing"
SDK1 = "anthropic==1.17.0"
NPM_TOOLS = ["@anthropic-ai/claude-code@2.1.197", "playbooks@0.1.20", "@microsoft/sarif-multitool@5.7.0"]


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _stamped(target: Path, key: str) -> bool:
    stamp = target / ".stamp"
    return stamp.exists() and stamp.read_text() == key


def _stamp(target: Path, key: str) -> None:
    (target / ".stamp").write_text(key)


def _say(msg: str) -> None:
    print(f"[tests] {msg}", file=sys.stderr, flush=True)


def ensure_venv(venv: Path, packages: list[str], key: str) -> Path:
    python = _bin(venv, "python")
    if python.exists() and _stamped(venv, key):
        return python
    _say(f"preparing {venv.name} ...")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
    _stamp(venv, key)
    return python


def ensure_project_venv() -> Path:
    """`.venv/` with the project installed in editable mode and its test tools; returns its Python.

    Reinstalled when pyproject.toml changes (its digest is the stamp).
    """
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    python = ensure_venv(ROOT / ".venv", ["-e", f"{ROOT}[test]"], key)
    remove_build_leftovers()
    return python


def remove_build_leftovers() -> None:
    """Delete build output an older install wrote into the skill folder, which an install of the skill would copy.

    pyproject.toml sends setuptools' egg-info to the repository root (`[tool.distutils.egg_info]`); a checkout
    installed with an older pyproject.toml may still hold `batchpilot.egg-info/` (or `build/`) next to the package.
    """
    for leftover in [*SKILL.glob("*.egg-info"), SKILL / "build"]:
        if leftover.is_dir():
            shutil.rmtree(leftover)


def ensure_npm_tools(tools: Path) -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        _say("npm not found: the tests that drive the Claude Code CLI, playbooks and sarif-multitool will fail; install Node.js")
        return None
    key = " ".join(NPM_TOOLS)
    if not _stamped(tools, key):
        _say("installing npm tools ...")
        tools.mkdir(exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(tools), "--no-audit", "--no-fund", "--loglevel=error", *NPM_TOOLS], check=True)
        _stamp(tools, key)
    return tools / "node_modules" / ".bin"


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):
        print("Error: Python 3.10 or newer is needed", file=sys.stderr)
        return 1
    python = ensure_project_venv()
    sdk1_python = ensure_venv(ROOT / ".venv-sdk1", [SDK1], SDK1)
    tool_bin = ensure_npm_tools(ROOT / ".tools")
    env = dict(os.environ)
    env["BATCHPILOT_SDK1_PYTHON"] = str(sdk1_python)
    if tool_bin is not None:
        env["BATCHPILOT_TOOL_BIN"] = str(tool_bin)
    cmd = [str(python), "-m", "pytest", "-p", "no:cacheprovider", *argv]
    code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    if code == 5:
        print("Error: no test ran", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
