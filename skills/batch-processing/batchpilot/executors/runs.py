"""The `runs` command: the runs of this project, where each one stands, and the command that carries it on.

A Message Batch outlives the session that submitted it; after a day or a context compaction the model finds
its way back here (the plugin's SessionStart hook prints `runs --unfinished --lines`). Everything is read from
the run directories' own files (run.json, journal.jsonl, summary.json): no SDK import, no network, no lock.
"""

from __future__ import annotations

from pathlib import Path

from batchpilot.core.files import iter_jsonl
from batchpilot.core.modes import next_for_mode
from batchpilot.core.shell import next_command
from batchpilot.executors.batch.lifecycle import next_after_fetch
from batchpilot.executors.batch.state import load_state
from batchpilot.rundir.guard import run_is_emulated
from batchpilot.rundir.manifest import RUNS_HOME, open_run
from batchpilot.core.errors import BatchpilotError

HOOK_MAX_RUNS = 5  # the SessionStart hook names at most this many runs: it goes into every session's context


def runs_home(start: Path | None = None) -> Path | None:
    """The project's `.batchpilot/runs`: in the current directory, else in the nearest parent that has one."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / RUNS_HOME).is_dir():
            return folder / RUNS_HOME
    return None


def merged_current(run_dir: Path) -> bool:
    """Whether summary.json exists and no result arrived after it."""
    summary, results = run_dir / "summary.json", run_dir / "results.jsonl"
    if not summary.is_file():
        return False
    return not results.exists() or results.stat().st_mtime <= summary.stat().st_mtime


def describe_run(run_dir: Path) -> dict | None:
    """One row: the run, its mode, whether emulated, its state in words, finished or not, and the next command."""
    try:
        manifest = open_run(run_dir)
    except BatchpilotError:
        return None  # a partial or foreign directory is not a run
    mode = str(manifest.get("mode") or "batch")
    row = {"run": str(run_dir), "template": (manifest.get("template") or {}).get("name"), "mode": mode,
           "emulated": run_is_emulated(run_dir, manifest), "items": manifest.get("item_count"),
           "created_at": manifest.get("created_at")}
    if merged_current(run_dir):
        summary = _summary_counts(run_dir)
        failed = sum(n for status, n in summary.items() if status != "ok")
        state = f"merged: {summary.get('ok', 0)} ok" + (f", {failed} not ok" if failed else "")
        return {**row, "state": state, "finished": True,
                "next": next_command("retry", run_dir) if failed and mode in ("batch", "direct") else None}
    state, nxt = _progress(run_dir, mode)
    return {**row, "state": state, "finished": False, "next": nxt}


def _summary_counts(run_dir: Path) -> dict:
    from batchpilot.core.files import read_json

    try:
        counts = read_json(run_dir / "summary.json", "summary").get("counts") or {}
    except (BatchpilotError, AttributeError):
        return {}
    return {k: v for k, v in counts.items() if isinstance(v, int)}


def _progress(run_dir: Path, mode: str) -> tuple[str, str]:
    """The state of an unmerged run and the command that carries it on."""
    if mode == "batch" or (run_dir / "rounds").is_dir() and mode not in ("agents", "headless"):
        state = load_state(run_dir)
        if not state.rounds:
            return "prepared, not submitted", next_command("submit", run_dir)
        open_, pending = len(state.open_batches()), len(state.pending())
        if open_ or pending:
            return (f"batches processing: {open_} open" + (f", {pending} shard(s) to submit" if pending else ""),
                    next_command("status", run_dir, "--wait"))
        return "batches ended, not merged", next_after_fetch(run_dir)
    if mode == "agents":
        fanned = any(ev.get("event") == "fanout" for ev in iter_jsonl(run_dir / "journal.jsonl"))
        if not fanned:
            return "prepared, no wave sent", next_for_mode(mode, run_dir)
        return "waves in progress: collect records the finished outputs", next_command("collect", run_dir)
    started = (run_dir / "results.jsonl").exists()
    return ("interrupted: re-running resumes" if started else "prepared, not run"), next_for_mode(mode, run_dir)


def runs_job(unfinished: bool, start: Path | None = None) -> dict:
    """The `runs` receipt: this project's runs, newest first (only the unfinished ones with `unfinished`)."""
    home = runs_home(start)
    rows = []
    if home is not None:
        for run_dir in sorted((p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: p.name, reverse=True):
            row = describe_run(run_dir)
            if row is not None and not (unfinished and row["finished"]):
                rows.append(row)
    waiting = [r for r in rows if not r["finished"]]
    return {"command": "runs", "home": str(home) if home else None, "runs": rows, "unfinished": len(waiting),
            "next": waiting[0]["next"] if waiting else None}


def runs_lines(receipt: dict) -> str:
    """The few lines the SessionStart hook adds to a session's context ('' when nothing is unfinished)."""
    waiting = [r for r in receipt["runs"] if not r["finished"]]
    if not waiting:
        return ""
    lines = [f"batch-processing: {len(waiting)} unfinished run(s) in this project (newest first); "
             "run a line's command to carry it on:"]
    for r in waiting[:HOOK_MAX_RUNS]:
        label = " [emulated rehearsal]" if r["emulated"] else ""
        lines.append(f"- {r['run']} ({r['mode']}, {r['items']} items{label}): {r['state']} -> {r['next']}")
    if len(waiting) > HOOK_MAX_RUNS:
        lines.append(f"- ... and {len(waiting) - HOOK_MAX_RUNS} more: {next_command('runs', '--unfinished')}")
    return "\n".join(lines)
