"""`retry`: re-run only the items whose latest outcome a retry can fix, as new Message Batches rounds."""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.commands.common import next_command, quiet
from batchpilot.commands.batch import RUN_ARG, _api_errors, emulate_option


@click.command()
@RUN_ARG
@emulate_option
@click.option("--only", "only", default=None, metavar="TYPES",
              help="Comma-separated: retryable (default: retryable errors, expired, missing), expired, missing, "
                   "canceled, errored, or an error type such as overloaded_error.")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None,
              help="Stop once the run has this many rounds, counting the first submission. [4]")
@click.option("--no-wait", is_flag=True, help="Submit one retry round and return; follow with `status --wait`.")
@click.pass_context
def retry(ctx: click.Context, run_dir: Path, emulate: bool, only: str | None, max_rounds: int | None, no_wait: bool) -> None:
    """Resubmit the items that failed retryably (same custom_ids), round after round while it helps.

    Example: batchpilot retry .batchpilot/runs/20260101-120000-code-review --only overloaded_error,expired
    """
    from batchpilot.batchrun import batch_client, counts_receipt, drive, require_run
    from batchpilot.cli import emit
    from batchpilot.errors import BatchpilotError
    from batchpilot.ledger import load_state, record, run_lock
    from batchpilot.progress import Progress
    from batchpilot.retry import DEFAULT_MAX_ROUNDS, parse_only

    progress = Progress(quiet(ctx))
    selection = parse_only(only)
    require_run(run_dir)
    with run_lock(run_dir):
        state = load_state(run_dir)
        if not state.rounds:
            raise BatchpilotError(f"{run_dir} has not been submitted yet", f"submit it first: {next_command('submit', run_dir)}")
        if state.canceled or state.stopped:
            record(run_dir, "job_resumed")  # an explicit retry lifts a cancel or an account stop
        limit = max_rounds or max(DEFAULT_MAX_ROUNDS, max(state.rounds) + 1)
        with batch_client(emulate, run_dir) as client:
            outcome = _api_errors(lambda: drive(client, run_dir, progress, emulate, wait=not no_wait,
                                                selection=selection, max_rounds=limit, force_first=True))
    emulated = ["--emulate"] if emulate else []
    progress.stage(f"retry: {outcome.stopped}")
    emit({"command": "retry", "run": str(run_dir), **counts_receipt(run_dir), "stopped": outcome.stopped,
          "items": outcome.classification, "submitted": outcome.submitted,
          "next": next_command("status", run_dir, "--wait", *emulated) if outcome.waiting else next_command("merge", run_dir)})
