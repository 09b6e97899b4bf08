"""`direct`: run a prepared run's requests through the Messages API, concurrently, at the rate limit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from batchpilot.cli.options import next_command, quiet


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
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
              help="Stop before the run's cost (USD, worst case per request in flight) would exceed this.")
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
    from batchpilot.api.client import api_client
    from batchpilot.cli.main import COMMANDS, emit
    from batchpilot.executors.direct.executor import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, Limits, run_direct
    from batchpilot.core.errors import BatchpilotError
    from batchpilot.core.progress import Progress
    from batchpilot.rundir.manifest import open_run

    open_run(run_dir)  # a clear error before any client or emulator starts
    if not emulate and (emulate_rpm or emulate_itpm or emulate_fault):
        raise BatchpilotError("--emulate-rpm, --emulate-itpm and --emulate-fault shape the emulator",
                              "add --emulate, or drop them")
    config = None
    if emulate:
        from batchpilot.emulator.config import EmulatorConfig

        try:
            config = EmulatorConfig.from_options(fault=emulate_fault, requests_per_minute=emulate_rpm,
                                                 input_tokens_per_minute=emulate_itpm)
        except ValueError as exc:
            raise BatchpilotError(str(exc), "fault specs look like overloaded=0.05 or kind=api_error,rate=0.1") from None
    progress = Progress(quiet(ctx))
    with api_client(emulate, async_client=True, max_retries=0, emulator_config=config) as client:
        receipt = run_direct(
            run_dir, client, limits=Limits(rpm, itpm, otpm), concurrency=concurrency or DEFAULT_CONCURRENCY,
            max_cost=max_cost, max_attempts=max_attempts or DEFAULT_MAX_ATTEMPTS, progress=progress,
            handle_sigint=True,
        )
    from batchpilot.api.failures import raise_if_unreachable

    raise_if_unreachable(receipt["counts"], next_command("direct", run_dir))
    stopped = receipt["stopped"]
    if stopped in ("interrupted", "max_cost") or receipt["counts"]["not_run"]:
        resume = ["direct", run_dir] + (["--emulate"] if emulate else [])
        nxt = next_command(*resume)
        if stopped == "max_cost":
            progress.warn(f"stopped before exceeding --max-cost {max_cost}: {receipt['counts']['not_run']} item(s) not run; "
                          "re-run with a higher --max-cost to continue")
        elif stopped == "interrupted":
            progress.stage(f"interrupted: {receipt['counts']['not_run']} item(s) not run; resume with `{nxt}`")
    else:
        nxt = next_command("merge", run_dir) if "merge" in COMMANDS else None
    emit({"command": "direct", **receipt, "next": nxt})
    if stopped == "interrupted":
        sys.exit(130)
