"""Creating a run directory (README.md and references/results.md describe its files).

`create_run` streams items through the template into `items.jsonl` and `requests.jsonl` inside a hidden
sibling directory and renames it into place only when complete, so a failed or killed `prepare` leaves no
half-written run. Re-preparing into an existing run is allowed only with identical inputs (same template
content, variables, model, options and items): then it is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from batchpilot.core import crash
from batchpilot.version import __version__
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.clock import now_iso
from batchpilot.core.paths import SKILL_DIR
from batchpilot.core.files import append_jsonl, atomic_write_json, dumps, naming, pid_alive, read_json
from batchpilot.prepare.items import Item, describe_skipped, items_fingerprint_update
from batchpilot.prepare.build import RequestBuilder
from batchpilot.prepare.run_estimate import RunEstimate
from batchpilot.core.paths import default_run_dir  # noqa: F401  (re-exported for the executors)
from batchpilot.rundir.lookup import job_fingerprint
from batchpilot.rundir.manifest import FORMAT_VERSION



@dataclass
class PrepareResult:
    """What `create_run` did: the run directory, counts, and whether it already existed unchanged."""

    run_dir: Path
    item_count: int
    skipped: Counter = field(default_factory=Counter)
    unchanged: bool = False
    manifest: dict = field(default_factory=dict)


def _inputs_digest(settings: dict) -> "hashlib._Hash":
    h = hashlib.sha256()
    h.update(dumps(settings).encode())
    return h


def inputs_fingerprint(items: Iterable[Item], settings: dict) -> str:
    """The `inputs_hash` a run prepared from these items and settings has (streams the items once)."""
    h = _inputs_digest(settings)
    for item in items:
        items_fingerprint_update(h, item)
    return "sha256:" + h.hexdigest()


def create_run(
    run_dir: Path,
    items: Iterable[Item],
    skipped_log: list,
    builder: RequestBuilder,
    settings: dict,
    manifest_extra: dict,
    estimate: RunEstimate | None = None,
) -> PrepareResult:
    """Write a complete run directory atomically, or recognise an identical existing one.

    `settings` (template hash, variables, model, options) and the items determine the run's inputs hash.
    `skipped_log` is filled by the item loader as it goes (source, reason, detail tuples). `estimate` tallies
    the requests as they are written; its figure for the run's mode goes to run.json's `estimate`.
    """
    run_dir = Path(run_dir)
    _refuse_inside_skill(run_dir)
    if run_dir.exists():
        return _reprepare(run_dir, items, skipped_log, settings)
    parent = run_dir.parent
    tmp = parent / f".{run_dir.name}.partial-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_partials(parent)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise BatchpilotError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}",
                              "pass a --run path in a writable directory (its parent must be a directory)") from None
    try:
        h = _inputs_digest(settings)
        count = 0
        with naming(run_dir), open(tmp / "items.jsonl", "w", encoding="utf-8") as items_fh, \
                open(tmp / "requests.jsonl", "w", encoding="utf-8") as req_fh:
            for item in items:
                items_fingerprint_update(h, item)
                items_fh.write(dumps(item.manifest()) + "\n")
                request = builder.request(item)
                req_fh.write(dumps(request) + "\n")
                if estimate is not None:
                    estimate.add(request["params"], item)
                count += 1
            crash.point("prepare-after-items")
            for fh in (items_fh, req_fh):
                fh.flush()
                os.fsync(fh.fileno())
        if count and builder.retarget(count):
            _restamp_requests(tmp / "requests.jsonl", builder)
        skipped = Counter(reason for _, reason, _ in skipped_log)
        if count == 0:
            raise BatchpilotError(f"no items to process ({describe_skipped(skipped_log)})",
                                  "point --items at text files or records with content")
        append_jsonl(tmp / "skipped.jsonl", ({"source": s, "reason": r, "detail": d} for s, r, d in skipped_log))
        manifest = {
            "format_version": FORMAT_VERSION,
            "batchpilot_version": __version__,
            "created_at": now_iso(),
            **manifest_extra,
            "cache": builder.cache_choice,  # as chosen for the job's size (`RequestBuilder.retarget`)
            "item_count": count,
            "skipped": dict(sorted(skipped.items())),
            "inputs_hash": "sha256:" + h.hexdigest(),
        }
        if estimate is not None and (figure := estimate.as_manifest(builder.cache_ttl)) is not None:
            manifest["estimate"] = figure  # what plan would print for this run: the report sets the bill against it
        # What `run` without --run matches to resume this job instead of paying for it again (rundir.lookup).
        manifest["job_fingerprint"] = job_fingerprint(manifest["inputs_hash"], manifest.get("mode"))
        # The schema travels with the run, so merge can validate even if the template directory moves.
        atomic_write_json(tmp / "schema.json", builder.template.schema)
        atomic_write_json(tmp / "run.json", manifest)
        append_jsonl(tmp / "journal.jsonl", [{"at": now_iso(), "event": "prepared", "items": count}])
        crash.point("prepare-before-rename")
        try:
            os.rename(tmp, run_dir)
        except OSError:
            if not run_dir.exists():
                raise
            # Another prepare of the same --run won the race: ours is its duplicate, or a conflict.
            shutil.rmtree(tmp, ignore_errors=True)
            return _won_by_other(run_dir, manifest["inputs_hash"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(run_dir, count, skipped, False, manifest)


def _restamp_requests(path: Path, builder: RequestBuilder) -> None:
    """Rewrite the requests with the cache choice made for the job's size (a small batch: few lines)."""
    tmp = path.with_name(path.name + ".restamp")
    with open(path, "rb") as src, open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            request = json.loads(line)
            dst.write(dumps({**request, "params": builder.restamp(request["params"])}) + "\n")
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)


def _won_by_other(run_dir: Path, inputs_hash: str) -> PrepareResult:
    """The run another process created at `run_dir` while this one prepared: the same run if its inputs match."""
    manifest_path = run_dir / "run.json"
    other = read_json(manifest_path, "run manifest") if manifest_path.is_file() else {}
    if not isinstance(other, dict) or other.get("inputs_hash") != inputs_hash:
        raise BatchpilotError(f"{run_dir} was created by another process while this one prepared it",
                              "pass a new --run directory, or re-run once the other process has finished")
    return PrepareResult(run_dir, int(other.get("item_count", 0)), Counter(other.get("skipped") or {}), True, other)


def _refuse_inside_skill(run_dir: Path) -> None:
    """A run inside the skill's own folder would be deleted by the next update of the skill."""
    target, skill = run_dir.resolve(), SKILL_DIR.resolve()
    if target == skill or skill in target.parents:
        raise BatchpilotError(f"--run {run_dir} is inside the skill's folder {skill}",
                              "an update of the skill would delete it: put runs in your project "
                              "(the default is .batchpilot/runs/ under the current directory)")


def _remove_dead_partials(parent: Path) -> None:
    """Remove the `.<run>.partial-<pid>` directories of prepares that were killed (their process is gone),
    whatever run they were for: a killed prepare of a timestamped default run is never prepared again."""
    for stale in parent.glob(".*.partial-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and stale.is_dir() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _reprepare(run_dir: Path, items: Iterable[Item], skipped_log: list, settings: dict) -> PrepareResult:
    manifest_path = run_dir / "run.json"
    if not manifest_path.is_file():
        if run_dir.is_dir() and not any(run_dir.iterdir()):
            raise BatchpilotError(f"{run_dir} exists and is empty", "remove it, or pass a new --run directory")
        raise BatchpilotError(f"{run_dir} exists and is not a batchpilot run", "pass a new --run directory")
    manifest = read_json(manifest_path, "run manifest")
    digest = inputs_fingerprint(items, settings)
    if digest != manifest.get("inputs_hash"):
        raise BatchpilotError(
            f"{run_dir} was prepared from different inputs (template, items, model or options changed)",
            "pass a new --run directory, or delete the old run if you no longer need it",
        )
    return PrepareResult(run_dir, int(manifest.get("item_count", 0)), Counter(manifest.get("skipped") or {}), True, manifest)
