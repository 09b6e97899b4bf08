"""Shared fixtures: every test runs isolated (own directory, no API key, no reachable API), and can run the
CLI in-process or start an emulator.

* `isolated` (autouse): chdir to a fresh tmp dir; `ANTHROPIC_API_KEY` removed; `ANTHROPIC_BASE_URL` points at a
  closed loopback port, so any accidental real call fails fast instead of reaching the network.
* `bp(*args, input=None)`: runs `batchpilot` through click's CliRunner and returns a `Result` with `code`,
  `receipt` (the stdout JSON, or None), `stdout` and `stderr`.
* `emulator(**config)`: starts an in-process emulator with those `EmulatorConfig` fields and returns it
  (`.base_url`); stopped at the end of the test.
* `SKILL_DIR`, `SAMPLES`, `tool_path(name)`.
* `command(*words)`: a suggested command as receipts print it (the shim's absolute path; `Path` words absolute).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SKILL_DIR = ROOT / "skills" / "batch-processing"
SAMPLES = SKILL_DIR / "samples" / "python-app"
SHIM = SKILL_DIR / "scripts" / "batchpilot"

# Bytecode of this run (and of every subprocess it starts) goes under .pycache/, never into the skill folder:
# a plugin or skill install from this checkout copies that folder (tests/test_install.py measures it).
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(ROOT / ".pycache"))
sys.pycache_prefix = sys.pycache_prefix or os.environ["PYTHONPYCACHEPREFIX"]


def command(*words: str | Path) -> str:
    """A suggested command as receipts print it: runnable from any directory, as the shim's absolute path."""
    return " ".join([shlex.quote(str(SHIM)), *(shlex.quote(str(w.absolute() if isinstance(w, Path) else w)) for w in words)])


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    return tmp_path


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def receipt(self) -> dict | None:
        try:
            value = json.loads(self.stdout)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def run_cli(*args: str, input: str | None = None) -> Result:
    from batchpilot.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def bp():
    return run_cli


@pytest.fixture
def emulator():
    from batchpilot.emulator.http.server import Emulator
    from batchpilot.emulator.config import EmulatorConfig

    started = []

    def start(**config):
        emu = Emulator(EmulatorConfig(**config))
        emu.__enter__()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.__exit__(None, None, None)


def tool_path(name: str) -> str | None:
    """An npm tool installed by tests/run.py (BATCHPILOT_TOOL_BIN), else one on PATH."""
    tool_bin = os.environ.get("BATCHPILOT_TOOL_BIN")
    if tool_bin and (Path(tool_bin) / name).exists():
        return str(Path(tool_bin) / name)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """The tool's path; in CI a missing tool fails the test, elsewhere it skips with the reason."""
    path = tool_path(name)
    if path is None:
        message = f"{name} is not installed (python3 tests/run.py installs it with npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
