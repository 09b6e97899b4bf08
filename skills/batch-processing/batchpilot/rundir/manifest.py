"""A run's manifest, `run.json`: the one way to open an existing run directory."""

from __future__ import annotations

from pathlib import Path

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import read_json

FORMAT_VERSION = 1
RUNS_HOME = Path(".batchpilot") / "runs"  # where runs go by default, under the current directory


def open_run(run_dir: Path | str) -> dict:
    """The manifest of an existing run, or an error saying how to create one."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise BatchpilotError(f"{run_dir} is not a run directory (no run.json)",
                              "create one with `batchpilot prepare --template T --items SRC --run DIR`")
    manifest = read_json(run_dir / "run.json", "run manifest")
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise BatchpilotError(f"{run_dir / 'run.json'}: unsupported or damaged manifest", "prepare the run again into a new directory")
    return manifest


def require_requests(run_dir: Path) -> dict:
    """The manifest of a run that has its requests.jsonl (every executor needs it)."""
    manifest = open_run(run_dir)
    if not (Path(run_dir) / "requests.jsonl").is_file():
        raise BatchpilotError(f"{run_dir} has no requests.jsonl", "prepare the run again into a new directory")
    return manifest
