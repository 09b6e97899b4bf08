"""`direct`: run a prepared run's requests through the Messages API, concurrently, at the rate limit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import RUN_ARG, quiet
from batchpilot.core.progress import Progress


@click.command()
@RUN_ARG
@click.option("--emulate", is_flag=True, help="Send to a local in-process emulator instead of the API (free).")
@click.option("--rpm", type=click.IntRange(min=1), envvar="BATCHPILOT_RPM",
              help="Requests per minute to stay under. [default: learned from the API's rate-limit headers]")
@click.option("--itpm", type=click.IntRange(min=1), envvar="BATCHPILOT_ITPM",
              help="Input tokens per minute to stay under. [default: learned]")
@click.option("--otpm", type=click.IntRange(min=1), envvar="BATCHPILOT_OTPM",
              help="Output tokens per minute to stay under. [default: learned]")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=None, envvar="BATCHPILOT_CONCURRENCY",
              help="Most requests in flight at once; the rate limit, not this, sets the pace. [32]")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None,
              help="The run's budget: stop before its cost (what earlier invocations spent included; USD, worst case "
                   "per request in flight) would exceed this.")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=None,
              help="Tries per item for overloaded/server/connection errors (429s do not count). [5]")
@click.option("--emulate-rpm", type=click.IntRange(min=1), default=None, help="With --emulate: the emulated account's RPM.")
@click.option("--emulate-itpm", type=click.IntRange(min=1), default=None, help="With --emulate: the emulated account's ITPM.")
@click.option("--emulate-fault", multiple=True, metavar="SPEC",
              help="With --emulate: inject a fault, e.g. overloaded=0.05 (see `batchpilot emulate --help`).")
@click.pass_context
def direct(ctx: click.Context, run_dir: Path, emulate: bool, rpm: int | None, itpm: int | None, otpm: int | None,
           concurrency: int | None, max_cost: float | None, max_attempts: int | None, emulate_rpm: int | None,
           emulate_itpm: int | None, emulate_fault: tuple[str, ...]) -> None:
    """Send a prepared run's requests to the Messages API at the account's rate limit; re-run to resume.

    Example: batchpilot direct .batchpilot/runs/review --max-cost 5
    """
    # Imported when the command runs: the direct executor is not needed for `--help`.
    from batchpilot.executors.direct.limiter import Limits
    from batchpilot.executors.direct.command import direct_job

    receipt = direct_job(run_dir, emulate, Limits(rpm, itpm, otpm), concurrency, max_cost, max_attempts,
                         Progress(quiet(ctx)), emulate_rpm=emulate_rpm, emulate_itpm=emulate_itpm,
                         emulate_faults=emulate_fault)
    emit(receipt)
    if receipt["stopped"] == "interrupted":
        sys.exit(130)
