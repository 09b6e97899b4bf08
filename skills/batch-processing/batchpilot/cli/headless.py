"""`headless`: run a prepared run's items through `claude -p` subprocesses, a bounded pool at a time."""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import RUN_ARG, quiet
from batchpilot.core.progress import Progress


@click.command()
@RUN_ARG
@click.option("-p", "--parallel", type=click.IntRange(min=1), default=4, show_default=True, help="claude processes at once.")
@click.option("--claude", "claude", default=None, metavar="PATH",
              help="The Claude Code executable (default: $BATCHPILOT_CLAUDE, else `claude` on PATH).")
@click.option("-m", "--model", default=None, help="Model for claude --model (default: the run's model).")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True, help="Seconds per item before it is killed.")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="The run's budget: start no new item once the costs claude reported for the run (earlier "
                   "invocations included) reach this.")
@click.option("--bare", is_flag=True, help="Pass --bare to claude: small, stable requests; API-key auth only, no plugins or CLAUDE.md.")
@click.pass_context
def headless(ctx: click.Context, run_dir: Path, parallel: int, claude: str | None, model: str | None, timeout: float,
             max_cost: float | None, bare: bool) -> None:
    """Run every item without a valid result through `claude -p` (prompt on stdin, schema-checked JSON out).

    Example: batchpilot headless .batchpilot/runs/review --parallel 4 --max-cost 2
    """
    # Imported when the command runs: the executors are not needed for `--help`.
    from batchpilot.executors.headless import headless_job

    emit(headless_job(run_dir, parallel, claude, model, timeout, max_cost, bare, Progress(quiet(ctx))))
