"""`demo`: the offline rehearsal — the bundled code-review sample job, end to end, on an in-process emulator.

No key, no network, no cost: the emulator runs on an accelerated clock with a few injected faults (two
overloaded lines and one expired line), so the run shows a retry round before it merges and writes the
report. The samples are found next to this package, never through the current directory; the run directory
is created under the current directory (`.batchpilot/runs/<timestamp>-demo`, or `--run`).
"""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.options import next_command, quiet
from batchpilot.core.paths import SAMPLES_DIR

SAMPLES = SAMPLES_DIR / "python-app"
DEMO_SEED = 8  # chosen so that round 1 hits two overloaded lines and one expired one, and round 2 clears them
DEMO_FAULTS = ("kind=overloaded,rate=0.25", "kind=expired,rate=0.12")


def demo_config(run_dir: Path):  # noqa: ANN201 - EmulatorConfig, imported lazily
    """The demo's emulator: persistent in RUN/emulator, a clock 600x faster than wall time, a few faults."""
    from batchpilot.emulator.config import EmulatorConfig
    from batchpilot.emulator.behaviour.faults import FaultRule

    data_dir = run_dir / "emulator"
    data_dir.mkdir(parents=True, exist_ok=True)
    # 8 requests at 0.01 requests per emulated second, 600 emulated seconds per wall second: ~1.3 s a batch.
    return EmulatorConfig(seed=DEMO_SEED, time_scale=600.0, batch_speed=0.01, data_dir=str(data_dir), persist=True,
                          faults=[FaultRule.parse(spec) for spec in DEMO_FAULTS])


@click.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: .batchpilot/runs/<timestamp>-demo).")
@click.pass_context
def demo(ctx: click.Context, run_dir: Path | None) -> None:
    """Rehearse a whole batch job offline: the sample code review, with faults, retries, merge and report.

    Example: batchpilot demo
    """
    from batchpilot.cli.main import emit
    from batchpilot.cli.run import run_batch
    from batchpilot.prepare.job import open_job
    from batchpilot.core.progress import Progress
    from batchpilot.rundir.create import create_run, default_run_dir

    progress = Progress(quiet(ctx))
    job = open_job("code-review", str(SAMPLES / "*.py"), mode="batch")
    target = run_dir or default_run_dir("demo")
    progress.stage(f"demo: {job.template.name} over {SAMPLES.name}/*.py on the local emulator, into {target}")
    prepared = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    options = {"emulate": True, "no_wait": False, "max_rounds": None, "formats": ()}
    body = run_batch(ctx, prepared.run_dir, options, progress, demo_config(prepared.run_dir))
    report = body.get("files", {}).get("report.html")
    counts = body.get("counts", {})
    progress.stage(f"demo done: {counts.get('ok', 0)} of {prepared.item_count} items ok after {body.get('rounds')} "
                   f"round(s); report: {report}")
    emit({"command": "demo", "run": str(prepared.run_dir), "items": prepared.item_count, **body,
          "report": report,
          # Your own files next: the same job, rehearsed on the emulator before any money is spent.
          "next": next_command("run", "--template", "code-review", "--items", "src/**/*.py", "--emulate")})
