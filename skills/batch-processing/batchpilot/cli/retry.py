"""`retry`: re-run only the items whose latest outcome a retry can fix, as new Message Batches rounds or
one round through the Messages API; invalid answers are re-asked with the validator's message."""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import RUN_ARG, emulate_option, quiet
from batchpilot.core.progress import Progress

RETRY_MODES = ("batch", "direct")


@click.command()
@RUN_ARG
@emulate_option
@click.option("--only", "only", default=None, metavar="TYPES",
              help="Comma-separated: invalid (answers that failed the schema: re-asked with the previous answer and "
                   "the validator's message; cut-off answers get max_tokens doubled), retryable (retryable errors, "
                   "expired, missing), expired, missing, canceled, errored, or an error type such as "
                   "overloaded_error. [default: retryable,invalid]")
@click.option("--mode", type=click.Choice(RETRY_MODES), default=None,
              help="batch: new Message Batches rounds (50% price); direct: one round through the Messages API now. "
                   "[default: the mode the run was prepared for, batch unless direct]")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None,
              help="Batch mode: stop once the run has this many rounds, counting the first submission. [4]")
@click.option("--no-wait", is_flag=True, help="Batch mode: submit one retry round and return; follow with `status --wait`.")
@click.pass_context
def retry(ctx: click.Context, run_dir: Path, emulate: bool, only: str | None, mode: str | None, max_rounds: int | None,
          no_wait: bool) -> None:
    """Re-run the items that failed retryably or answered invalid JSON (same custom_ids), round after round while it helps.

    Example: batchpilot retry .batchpilot/runs/20260101-120000-code-review --only invalid,expired
    """
    # Imported when the command runs: the retry flows load both API executors, which `retry --help` does not need.
    from batchpilot.executors.retry import retry_job

    emit(retry_job(run_dir, emulate, only, mode, max_rounds, no_wait, Progress(quiet(ctx))))
