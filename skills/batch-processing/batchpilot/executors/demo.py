"""The offline rehearsal behind `demo`: the bundled code-review sample job, end to end, on an in-process emulator.

No key, no network, no cost: the emulator runs on an accelerated clock with a few injected faults (two
overloaded lines and one expired line), so the run shows a retry round before it merges and writes the
report. The samples are found next to this package, never through the current directory; the run directory
is created where the caller says (the CLI's default is `.batchpilot/runs/<timestamp>-demo`).
"""

from __future__ import annotations

from pathlib import Path

from batchpilot.core.files import safe_dir
from batchpilot.core.paths import SAMPLES_DIR
from batchpilot.core.progress import Progress
from batchpilot.core.shell import next_command
from batchpilot.emulator.behaviour.faults import FaultRule
from batchpilot.emulator.config import EmulatorConfig
from batchpilot.executors.pipeline import RunOptions, run_batch
from batchpilot.prepare.job import open_job
from batchpilot.rundir.create import create_run, default_run_dir
from batchpilot.rundir.guard import record_emulated
from batchpilot.prepare.run_estimate import RunEstimate

SAMPLES = SAMPLES_DIR / "python-app"
DEMO_SEED = 8  # chosen so that round 1 hits two overloaded lines and one expired one, and round 2 clears them
DEMO_FAULTS = ("kind=overloaded,rate=0.25", "kind=expired,rate=0.12")


def demo_config(run_dir: Path) -> EmulatorConfig:
    """The demo's emulator: persistent in RUN/emulator, a clock 600x faster than wall time, a few faults."""
    data_dir = safe_dir(run_dir, "emulator")
    # 8 requests at 0.01 requests per emulated second, 600 emulated seconds per wall second: ~1.3 s a batch.
    return EmulatorConfig(seed=DEMO_SEED, time_scale=600.0, batch_speed=0.01, data_dir=str(data_dir), persist=True,
                          faults=[FaultRule.parse(spec) for spec in DEMO_FAULTS])


def demo_job(run_dir: Path | None, progress: Progress) -> dict:
    """The `demo` receipt: the sample job prepared into `run_dir` and run in batch mode on the demo emulator."""
    job = open_job("code-review", str(SAMPLES / "*.py"), mode="batch")
    target = run_dir or default_run_dir("demo")
    progress.stage(f"demo: {job.template.name} over {SAMPLES.name}/*.py on the local emulator, into {target}")
    prepared = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest(),
                          estimate=RunEstimate.for_job(job))
    record_emulated(prepared.run_dir, True)
    body = run_batch(prepared.run_dir, RunOptions(emulate=True), progress, demo_config(prepared.run_dir))
    report = body.get("files", {}).get("report.html")
    counts = body.get("counts", {})
    progress.stage(f"demo done: {counts.get('ok', 0)} of {prepared.item_count} items ok after {body.get('rounds')} "
                   f"round(s); report: {report}")
    return {"command": "demo", "run": str(prepared.run_dir), "items": prepared.item_count, **body,
            "report": report,
            # Your own files next: the same job, rehearsed on the emulator before any money is spent.
            "next": next_command("run", "--template", "code-review", "--items", "src/**/*.py", "--emulate")}
