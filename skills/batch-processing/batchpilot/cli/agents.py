"""`fanout` and `collect`: agents mode, where Claude Code subagents do the items in waves of at most 10."""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import RUN_ARG
WAVE_SIZE_OPT = click.option("--wave-size", type=click.IntRange(min=1), default=None,
                             help="Tasks per wave (default: the last one fanout was given, else 10, the Agent tool's concurrency).")
ATTEMPTS_OPT = click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
                            help="Give an item up after this many listings or rejected results.")


@click.command()
@RUN_ARG
@WAVE_SIZE_OPT
@click.option("--wave", type=click.IntRange(min=1), default=None, help="Print wave K of the pending items (default 1).")
@click.option("--subagent-model", type=click.Choice(["haiku", "sonnet", "opus"]), default=None,
              help="Model hint for the subagents (default: the template's subagent_model).")
@ATTEMPTS_OPT
def fanout(run_dir: Path, wave_size: int | None, wave: int | None, subagent_model: str | None, max_attempts: int) -> None:
    """Write one self-contained prompt file per item and print the first wave of Agent tasks.

    Example: batchpilot fanout .batchpilot/runs/review
    """
    # Imported when the command runs: the executor is not needed for `--help`.
    from batchpilot.executors.agents import fanout_run

    emit(fanout_run(run_dir, wave_size, wave, subagent_model, max_attempts))


@click.command()
@RUN_ARG
@WAVE_SIZE_OPT
@ATTEMPTS_OPT
def collect(run_dir: Path, wave_size: int | None, max_attempts: int) -> None:
    """Validate and record the subagents' result files; print counts and the next wave to send.

    Example: batchpilot collect .batchpilot/runs/review
    """
    # Imported when the command runs: the executor is not needed for `--help`.
    from batchpilot.executors.agents import collect_run

    emit(collect_run(run_dir, wave_size, max_attempts))
