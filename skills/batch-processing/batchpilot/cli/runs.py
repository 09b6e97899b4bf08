"""`runs`: the project's runs, where each stands, and the command that carries it on (no API, no SDK)."""

from __future__ import annotations

import click

from batchpilot.cli.main import emit


@click.command()
@click.option("--unfinished", is_flag=True, help="Only the runs that are not merged yet (batches waiting, waves open, interrupted).")
@click.option("--lines", is_flag=True,
              help="Print a few plain lines instead of the receipt, and nothing when no run is unfinished (for a SessionStart hook).")
def runs(unfinished: bool, lines: bool) -> None:
    """List the runs under .batchpilot/runs/ (here or in the nearest parent) with their state and next command.

    Example: batchpilot runs --unfinished
    """
    from batchpilot.executors.runs import runs_job, runs_lines  # loaded per command, so `--help` stays light

    receipt = runs_job(unfinished or lines)
    if lines:
        text = runs_lines(receipt)
        if text:
            click.echo(text)
        return
    emit(receipt)
