"""Retry rounds of a batch run: submit, wait, fetch, then decide about one more round, until done.

    with batch_client(emulate, run_dir) as client:
        outcome = drive(client, run_dir, progress, emulate=emulate)

After each round `drive` classifies every item's latest outcome (`results/selection.py`) and plans a new
round of the ones a retry can fix, until nothing is left, the round limit, a round without progress, a
cancel, or an account-level refusal (which stops the job with the API's message). Every decision is
recomputed from the journal and results.jsonl, so a process killed anywhere resumes by running the same
command again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.api.failures import account_error
from batchpilot.core.progress import Progress
from batchpilot.core.shell import next_command
from batchpilot.executors.batch.driver import submit_step, wait_and_fetch
from batchpilot.executors.batch.state import load_state, record, round_refusal
from batchpilot.executors.batch.submit import plan_round
from batchpilot.executors.uploads import restore_uploads
from batchpilot.results.selection import DEFAULT_MAX_ROUNDS, DEFAULT_SELECTION, classify, write_round_file


NOTHING_LEFT = "nothing left to retry"  # the stop that ends a job: every item done or beyond a retry


@dataclass
class Outcome:
    """Where a drive stopped, and why."""

    rounds: int = 0
    stopped: str = ""
    waiting: bool = False  # returned early (--no-wait): batches still open
    classification: dict = field(default_factory=dict)
    submitted: list[str] = field(default_factory=list)


def drive(client: Any, run_dir: Path, progress: Progress, emulate: bool, wait: bool = True,
          selection: frozenset[str] = DEFAULT_SELECTION, max_rounds: int = DEFAULT_MAX_ROUNDS,
          force_first: bool = False) -> Outcome:
    """Run the job to its end: submit, wait, fetch, and retry rounds while they help."""
    run_dir = Path(run_dir)
    out = Outcome()
    first = True
    state = load_state(run_dir)
    if force_first and state.rounds and not state.round_done(max(state.rounds)):
        # A retry re-run after a kill finds the round it planned unfinished: it resumes that round rather
        # than forcing one more (the killed run's forced round is this one), as an uninterrupted retry would.
        force_first = False
    while True:
        result = submit_step(client, run_dir, progress)
        out.submitted += result.created + result.reconciled
        if not wait:
            state = load_state(run_dir)
            out.rounds, out.waiting, out.stopped = max(state.rounds), True, "not waiting (--no-wait)"
            return out
        wait_and_fetch(client, run_dir, progress, emulate)
        state = load_state(run_dir)
        current = max(state.rounds)
        out.rounds = current
        if state.stopped:
            raise account_error(state.stopped.get("error_type", "error"), state.stopped.get("message", ""),
                                _resume_after_stop(run_dir))
        # An explicit retry after an account stop means "fixed it": judge only the rounds it submits.
        failure = None if (force_first and first) else round_refusal(state, current)
        if failure:
            record(run_dir, "job_stopped", reason="account", error_type=failure[0], message=failure[1])
            raise account_error(*failure, _resume_after_stop(run_dir))
        if state.canceled:
            out.stopped = "the job was canceled"
            break
        if not state.round_done(current):
            out.stopped = f"round {current} is not finished"
            break
        found = classify(run_dir, selection)
        out.classification = dict(found.counts)
        progress_made = found.ok - state.rounds[current].ok_before
        if not found.selected:
            out.stopped = NOTHING_LEFT
            break
        if current >= max_rounds:
            out.stopped = f"round limit reached ({max_rounds} rounds)"
            break
        if current >= 2 and progress_made <= 0 and not (force_first and first):
            out.stopped = f"round {current} made no progress"
            break
        first = False
        by = {}
        for category in found.selected.values():
            by[category] = by.get(category, 0) + 1
        restore_uploads(client, run_dir, found.selected, progress)  # an explicit retry after the uploads were deleted
        source = write_round_file(run_dir, current + 1, found.selected)
        plan_round(run_dir, current + 1, source, ok_before=found.ok, selected=by)
        progress.stage(f"round {current + 1}: retrying {len(found.selected)} item(s) "
                       f"({', '.join(f'{n} {k}' for k, n in sorted(by.items()))})")
    return out


def _resume_after_stop(run_dir: Path) -> str:
    # After an account stop only an explicit retry of the errored items goes on (it lifts the stop).
    return next_command("retry", run_dir, "--only", "errored")
