"""`demo`: the offline rehearsal — the bundled code-review sample job, end to end, on an in-process emulator.

No key, no network, no cost; see batchpilot.executors.demo. The run directory is created under the current
directory (`.batchpilot/runs/<timestamp>-demo`, or `--run`).
"""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.main import emit
from batchpilot.cli.options import quiet
from batchpilot.core.progress import Progress


@click.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True), default=None,
              help="Run directory (default: .batchpilot/runs/<timestamp>-demo).")
@click.pass_context
def demo(ctx: click.Context, run_dir: Path | None) -> None:
    """Rehearse a whole batch job offline: the sample code review, with faults, retries, merge and report.

    Example: batchpilot demo
    """
    # Imported when the command runs: the emulator and the batch executor are not needed for `--help`.
    from batchpilot.executors.demo import demo_job

    emit(demo_job(run_dir, Progress(quiet(ctx))))
