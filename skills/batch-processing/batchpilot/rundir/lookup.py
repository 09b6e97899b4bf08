"""Finding the run of a job: what lets `run` without `--run` resume instead of paying again.

A job is identified by its *job fingerprint* (stored as `run.json`'s `job_fingerprint`, but always
recomputed when matching): a hash of the run's `inputs_hash` (template content, variables, model, options
and every item) and its `mode`. `run` without `--run` looks under `.batchpilot/runs/` for the newest run with the same fingerprint (`find_run`), holding
the project lock (`rundir.lock.project_lock`) so two `run`s typed at once cannot both create one. A run is
*finished* when its journal's last event is `merged`: its results were merged after the last thing that
changed them (`is_finished`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path
from typing import Callable

from batchpilot.core.files import read_json
from batchpilot.rundir.journal import iter_journal


def job_fingerprint(inputs_hash: str, mode: str | None) -> str:
    """The fingerprint of a job: its inputs (template, variables, model, options, items) and its mode."""
    return "sha256:" + hashlib.sha256(f"{inputs_hash}\0{mode or 'batch'}".encode()).hexdigest()


def manifest_fingerprint(manifest: dict) -> str | None:
    """A run.json's job fingerprint, always computed from its own inputs hash and mode: a stored
    `job_fingerprint` is only a copy, and one hand-edited (or copied from another run) must not make this run
    pass for another job, whose results it would then report or whose items it would be resumed with."""
    if not manifest.get("inputs_hash"):
        return None
    return job_fingerprint(str(manifest["inputs_hash"]), manifest.get("mode"))


def find_run(runs_home: Path, fingerprint: str, accept: Callable[[Path], bool] | None = None) -> Path | None:
    """The newest run directory under `runs_home` prepared for this job fingerprint (and, given `accept`, for
    which `accept(run_dir)` is true), or None."""
    best: tuple[str, str, Path] | None = None
    for manifest_path in Path(runs_home).glob("*/run.json"):
        try:
            manifest = read_json(manifest_path, "run manifest")
        except Exception:  # a damaged or foreign run.json is not this job's run
            continue
        if not isinstance(manifest, dict) or manifest_fingerprint(manifest) != fingerprint:
            continue
        if accept is not None and not accept(manifest_path.parent):
            continue
        key = (str(manifest.get("created_at") or ""), manifest_path.parent.name, manifest_path.parent)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


def is_finished(run_dir: Path) -> bool:
    """Whether the run's results were merged after the last event that changed them."""
    last = deque(iter_journal(run_dir), maxlen=1)
    return bool(last) and last[0].get("event") == "merged"
