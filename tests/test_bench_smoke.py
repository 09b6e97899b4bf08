"""Smoke test of the benchmark suite: `bench/run_all.py --smoke` runs every benchmark at its smallest size
and produces every row of the table. It asserts that the figures exist, not that any target is met (that is
what the full run is for), and writes to a temporary file, never to the committed bench/results.json. And
`python3 bench/run_all.py` is one command: started by a Python without the dependencies, it runs itself in
the project's `.venv/`, reusing it as it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = ROOT / "bench" / "run_all.py"
# Rows each benchmark contributes to the table.
EXPECTED_ROWS = {"startup": 5, "direct": 10, "batch": 4, "merge": 4, "agents": 3, "cost": 15, "emulator": 1, "media": 3,
                 "memory": 4, "estimates": 4}


def test_run_all_smoke_produces_every_row(tmp_path):
    out = tmp_path / "results.json"
    before = (ROOT / "bench" / "results.json").read_bytes() if (ROOT / "bench" / "results.json").exists() else None
    done = subprocess.run([sys.executable, str(RUN_ALL), "--smoke", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["failed"] == {}
    assert result["profile"] == "smoke"
    assert Counter(r["benchmark"] for r in result["rows"]) == EXPECTED_ROWS
    for r in result["rows"]:
        assert r["value"] is not None and r["baseline_value"] is not None, r
        if r["target"] is not None:
            assert r["pass"] in (True, False), r
    assert set(result["versions"]) == {"python", "anthropic", "batchpilot", "click", "jsonschema"}
    assert result["machine"]["cpu_count"] and result["date"]
    # The table on stdout has a header, a rule and one line per row.
    assert len([line for line in done.stdout.splitlines() if line.startswith("| ")]) == sum(EXPECTED_ROWS.values()) + 1
    after = (ROOT / "bench" / "results.json").read_bytes() if (ROOT / "bench" / "results.json").exists() else None
    assert after == before


def test_run_all_started_without_the_dependencies_runs_in_the_project_venv(tmp_path):
    # A venv without pip sees none of the test environment's packages, as a bare `python3` on a fresh machine.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    out = tmp_path / "results.json"
    done = subprocess.run([str(bare / "bin" / "python"), str(RUN_ALL), "--smoke", "--only", "agents", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["failed"] == {} and Counter(r["benchmark"] for r in result["rows"]) == {"agents": EXPECTED_ROWS["agents"]}
    # The versions are read by the process that ran the benchmarks: the re-run in .venv, which has them.
    assert all(result["versions"][dist] for dist in ("anthropic", "click", "jsonschema")), result["versions"]
    assert "preparing .venv" not in done.stderr, "the prepared .venv should be reused, not installed again"
    assert len([line for line in done.stdout.splitlines() if line.startswith("| ")]) == EXPECTED_ROWS["agents"] + 1
