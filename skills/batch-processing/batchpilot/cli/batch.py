"""The Message Batches lifecycle commands: `submit`, `status`, `fetch`, `cancel`, and the `batches` listing.

Each one works on a prepared run directory, holds the run's lock while it changes it, journals every remote
side effect, and can be killed and re-run at any point (see batchpilot.executors.batch.lifecycle).
"""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import RUN_ARG, emulate_option, quiet
from batchpilot.core.progress import Progress

# Each command imports batchpilot.executors.batch.lifecycle when it runs: the batch executor's modules are
# not needed for `--help`.


@click.command()
@RUN_ARG
@emulate_option
@click.option("--max-batch-requests", type=click.IntRange(min=1), default=None,
              help="Requests per batch (default: env BATCHPILOT_MAX_BATCH_REQUESTS, else 100000).")
@click.option("--max-batch-bytes", type=click.IntRange(min=1024), default=None,
              help="Body bytes per batch, before a 5% headroom (default: env BATCHPILOT_MAX_BATCH_BYTES, else 256 MB).")
@click.pass_context
def submit(ctx: click.Context, run_dir: Path, emulate: bool, max_batch_requests: int | None, max_batch_bytes: int | None) -> None:
    """Shard the run's requests into Message Batches and create them (each exactly once).

    Example: batchpilot submit .batchpilot/runs/20260101-120000-code-review
    """
    from batchpilot.executors.batch.lifecycle import submit_job

    emit(submit_job(run_dir, emulate, max_batch_requests, max_batch_bytes, Progress(quiet(ctx))))


@click.command()
@RUN_ARG
@emulate_option
@click.option("--wait", is_flag=True, help="Poll until every batch has ended (submitting shards that wait for queue room).")
@click.pass_context
def status(ctx: click.Context, run_dir: Path, emulate: bool, wait: bool) -> None:
    """Show the run's batches: processing, succeeded, errored, expired, canceled.

    Example: batchpilot status .batchpilot/runs/20260101-120000-code-review --wait
    """
    from batchpilot.executors.batch.lifecycle import status_job

    emit(status_job(run_dir, emulate, wait, Progress(quiet(ctx))))


@click.command()
@RUN_ARG
@emulate_option
@click.pass_context
def fetch(ctx: click.Context, run_dir: Path, emulate: bool) -> None:
    """Download the results of every ended batch into results.jsonl (each result exactly once).

    Example: batchpilot fetch .batchpilot/runs/20260101-120000-code-review
    """
    from batchpilot.executors.batch.lifecycle import fetch_job

    emit(fetch_job(run_dir, emulate, Progress(quiet(ctx))))


@click.command()
@RUN_ARG
@emulate_option
@click.pass_context
def cancel(ctx: click.Context, run_dir: Path, emulate: bool) -> None:
    """Cancel the run's open batches, wait for them to end, and fetch what finished (successes are kept).

    Example: batchpilot cancel .batchpilot/runs/20260101-120000-code-review
    """
    from batchpilot.executors.batch.lifecycle import cancel_job

    emit(cancel_job(run_dir, emulate, Progress(quiet(ctx))))


@click.command()
@emulate_option
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True), default=None,
              help="With --emulate: list the batches of this run's emulator.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many (newest first).")
def batches(emulate: bool, run_dir: Path | None, limit: int) -> None:
    """List the account's newest batches and the run each belongs to (runs under .batchpilot/runs/).

    Example: batchpilot batches --limit 50
    """
    from batchpilot.executors.batch.lifecycle import list_batches

    emit(list_batches(emulate, run_dir, limit))
