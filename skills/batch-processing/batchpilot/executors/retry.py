"""The `retry` command: re-run only the items whose latest outcome a retry can fix.

In batch mode it drives new Message Batches rounds (`rounds/round-N.jsonl`, see the batch driver); in direct
mode it writes one round, `rounds/direct-N.jsonl`, and sends it through the direct executor. Either way the
invalid items are re-asked with the validator's message (`results.repair`), and the rounds' journal events
say how many were repaired each way. Each function returns the `retry` receipt; the CLI prints it.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from batchpilot.api.client import api_client, sdk_errors
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.progress import Progress
from batchpilot.core.shell import next_command
from batchpilot.executors.batch.driver import batch_client, counts_receipt
from batchpilot.executors.batch.rounds import NOTHING_LEFT, drive
from batchpilot.executors.uploads import finish_uploads
from batchpilot.executors.batch.state import load_state, record
from batchpilot.executors.direct.executor import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, run_direct
from batchpilot.executors.direct.command import direct_unfinished
from batchpilot.results.selection import DEFAULT_MAX_ROUNDS, classify, parse_only, write_round_file
from batchpilot.rundir.journal import iter_journal
from batchpilot.rundir.lock import run_lock
from batchpilot.rundir.guard import API_MODES, bind_emulated, require_mode
from batchpilot.rundir.manifest import require_requests

DIRECT_ROUND_PREFIX = "direct"
REPAIR_WORDS = {"feedback": "re-asked with their answer and the validator's message",
                "max_tokens": "cut off at max_tokens, re-asked with max_tokens doubled",
                "resend": "refused or empty, re-asked unchanged"}


def retry_job(run_dir: Path, emulate: bool, only: str | None, mode: str | None, max_rounds: int | None,
              no_wait: bool, progress: Progress) -> dict:
    """The `retry` receipt; `mode` defaults to the one the run was prepared for (batch unless direct).

    A run of another mode (agents, headless) is refused unless `mode` is given: switching it to an API mode is
    an explicit choice. The run's own emulated-or-real answer wins over `emulate` (`rundir.guard`)."""
    selection = parse_only(only)
    manifest = require_requests(run_dir)
    if mode is None:
        require_mode(run_dir, "retry", API_MODES)
    mode = mode or ("direct" if manifest.get("mode") == "direct" else "batch")
    emulate = bind_emulated(run_dir, emulate)
    if mode == "direct":
        return retry_direct(run_dir, emulate, selection, progress)
    return retry_batch(run_dir, emulate, selection, max_rounds, no_wait, progress)


def retry_batch(run_dir: Path, emulate: bool, selection: frozenset[str], max_rounds: int | None, no_wait: bool,
                progress: Progress) -> dict:
    """New Message Batches rounds for the selected items, while they help (at least one round is forced)."""
    with run_lock(run_dir):
        state = load_state(run_dir)
        if not state.rounds:
            raise BatchpilotError(f"{run_dir} has not been submitted yet",
                                  f"submit it first: {next_command('submit', run_dir)}, or retry with --mode direct")
        if state.canceled or state.stopped:
            record(run_dir, "job_resumed")  # an explicit retry lifts a cancel or an account stop
        limit = max_rounds or max(DEFAULT_MAX_ROUNDS, max(state.rounds) + 1)
        since = journal_length(run_dir)
        with batch_client(emulate, run_dir) as client, sdk_errors():
            outcome = drive(client, run_dir, progress, emulate, wait=not no_wait,
                            selection=selection, max_rounds=limit, force_first=True)
            uploads = None if outcome.waiting else finish_uploads(client, run_dir, outcome.stopped == NOTHING_LEFT,
                                                                 progress)
        repairs = count_repairs(run_dir, since)
    described = describe_repairs(repairs)
    if described:
        progress.stage(described)
    progress.stage(f"retry: {outcome.stopped}")
    return {"command": "retry", "run": str(run_dir), "mode": "batch", **counts_receipt(run_dir), "stopped": outcome.stopped,
            "items": outcome.classification, "repairs": repairs, "submitted": outcome.submitted,
            **({"uploads": uploads} if uploads else {}),
            "next": next_command("status", run_dir, "--wait") if outcome.waiting else next_command("merge", run_dir)}


def retry_direct(run_dir: Path, emulate: bool, selection: frozenset[str], progress: Progress) -> dict:
    """One round: write rounds/direct-N.jsonl (repaired lines for invalid items) and send it through the
    direct executor. Re-running selects again from results.jsonl, so a killed round resumes without resending
    what it already fixed."""
    with run_lock(run_dir):
        found = classify(run_dir, selection)
        if not found.selected:
            progress.stage("retry: nothing left to retry")
            return {"command": "retry", "run": str(run_dir), "mode": "direct", "stopped": "nothing left to retry",
                    "items": dict(found.counts), "selected": {}, "repairs": {}, "direct": None,
                    "next": next_command("merge", run_dir)}
        by: dict[str, int] = {}
        for category in found.selected.values():
            by[category] = by.get(category, 0) + 1
        since = journal_length(run_dir)
        source = write_round_file(run_dir, next_direct_round(run_dir), found.selected, prefix=DIRECT_ROUND_PREFIX)
        repairs = count_repairs(run_dir, since)
        progress.stage(f"retry: {len(found.selected)} item(s) through the Messages API "
                       f"({', '.join(f'{n} {k}' for k, n in sorted(by.items()))}) from {source}")
        described = describe_repairs(repairs)
        if described:
            progress.stage(described)
        with api_client(emulate, async_client=True, max_retries=0) as client:
            receipt = run_direct(run_dir, client, concurrency=DEFAULT_CONCURRENCY, max_attempts=DEFAULT_MAX_ATTEMPTS,
                                 progress=progress, handle_sigint=True, requests_file=Path(run_dir) / source)
    return {"command": "retry", "run": str(run_dir), "mode": "direct", "stopped": receipt.get("stopped") or "round done",
            "items": dict(found.counts), "selected": by, "repairs": repairs, "source": source, "direct": receipt,
            "next": next_command("retry", run_dir, "--mode", "direct") if direct_unfinished(receipt)
            else next_command("merge", run_dir)}


def next_direct_round(run_dir: Path) -> int:
    """The number of the next direct retry round: one more than the rounds/direct-N.jsonl files written."""
    return 1 + len(list((Path(run_dir) / "rounds").glob(f"{DIRECT_ROUND_PREFIX}-*.jsonl")))


def journal_length(run_dir: Path) -> int:
    """Events in the run's journal so far (where `count_repairs` starts counting)."""
    return sum(1 for _ in iter_journal(run_dir))


def count_repairs(run_dir: Path, since: int) -> dict[str, int]:
    """How the invalid items of the rounds planned after journal event `since` were re-asked."""
    total: dict[str, int] = {}
    for ev in islice(iter_journal(run_dir), since, None):
        if ev.get("event") == "round_rewritten":
            for how, n in (ev.get("how") or {}).items():
                total[how] = total.get(how, 0) + n
    return total


def describe_repairs(repairs: dict[str, int]) -> str | None:
    """One stderr line saying how the invalid items were re-asked (None when none were)."""
    parts = [f"{n} {REPAIR_WORDS.get(how, how)}" for how, n in sorted(repairs.items()) if n]
    return f"invalid items: {'; '.join(parts)}" if parts else None
