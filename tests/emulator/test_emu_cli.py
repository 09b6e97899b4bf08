"""`batchpilot emulate` as a process: first stdout line is the base_url, it serves, and it stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest
from click.testing import CliRunner

from batchpilot.cli.main import cli


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_emulate_prints_base_url_first_and_exits_0_on_signal(tmp_path, sig):
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "batchpilot", "emulate", "--log", str(log), "--seed", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert set(first) == {"base_url"} and first["base_url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(first["base_url"] + "/_emulator/stats", timeout=10) as response:
            assert json.load(response)["internal_errors"] == 0
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == "" and "Traceback" not in err
    assert json.loads(log.read_text().splitlines()[0])["path"] == "/_emulator/stats"


def test_emulate_rejects_bad_options_with_error_and_hint(tmp_path):
    result = CliRunner().invoke(cli, ["emulate", "--fault", "kind=nonsense"])
    assert result.exit_code == 1
    assert "Error: fault kind 'nonsense' is unknown" in result.output and "Hint:" in result.output
    bad = tmp_path / "scenario.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(cli, ["emulate", "--scenario", str(bad)])
    assert result.exit_code == 1 and "scenario file" in result.output


def test_emulate_help_and_no_sdk_import():
    assert CliRunner().invoke(cli, ["emulate", "--help"]).exit_code == 0
    code = ("import sys; import batchpilot.cli.emulate, batchpilot.emulator; "
            "from batchpilot.emulator.http.server import Emulator; Emulator().start().stop(); "
            "assert 'anthropic' not in sys.modules, 'the emulator imported the SDK'")
    subprocess.run([sys.executable, "-c", code], check=True)
