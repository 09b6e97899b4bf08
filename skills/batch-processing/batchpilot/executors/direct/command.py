"""The `direct` command as a function: send a prepared run's outstanding requests through the Messages API at
the rate limit (on an in-process emulator with --emulate), and say what comes next. `run` and `retry` use
`direct_unfinished` to decide whether a direct receipt left work to resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from batchpilot.api.client import api_client
from batchpilot.api.failures import raise_if_unreachable
from batchpilot.core.errors import BatchpilotError
from batchpilot.core.progress import Progress
from batchpilot.core.shell import next_command
from batchpilot.executors.direct.executor import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, run_direct
from batchpilot.executors.direct.limiter import Limits
from batchpilot.rundir.guard import API_MODES, bind_emulated, require_mode
from batchpilot.rundir.manifest import open_run

if TYPE_CHECKING:
    from batchpilot.emulator.config import EmulatorConfig


def direct_unfinished(receipt: dict) -> bool:
    """A direct receipt that left items unsent: interrupted, stopped at --max-cost, or items not run."""
    return receipt.get("stopped") in ("interrupted", "max_cost") or bool(receipt["counts"].get("not_run"))


def direct_emulator_config(emulate: bool, rpm: int | None, itpm: int | None, faults: tuple[str, ...]) -> EmulatorConfig | None:
    """The emulator `direct --emulate` starts, shaped by --emulate-rpm/-itpm/-fault (None without --emulate)."""
    if not emulate and (rpm or itpm or faults):
        raise BatchpilotError("--emulate-rpm, --emulate-itpm and --emulate-fault shape the emulator",
                              "add --emulate, or drop them")
    if not emulate:
        return None
    # The emulator is imported only for a rehearsal; a real direct run never loads it.
    from batchpilot.emulator.config import EmulatorConfig

    try:
        return EmulatorConfig.from_options(fault=faults, requests_per_minute=rpm, input_tokens_per_minute=itpm)
    except ValueError as exc:
        raise BatchpilotError(str(exc), "fault specs look like overloaded=0.05 or kind=api_error,rate=0.1") from None


def direct_job(run_dir: Path, emulate: bool, limits: Limits, concurrency: int | None, max_cost: float | None,
               max_attempts: int | None, progress: Progress, *, emulate_rpm: int | None = None,
               emulate_itpm: int | None = None, emulate_faults: tuple[str, ...] = ()) -> dict:
    """The `direct` receipt: send the run's outstanding requests through the Messages API at the rate limit.

    The emulate_* values shape the emulator (`direct_emulator_config`). An interrupted run's receipt has
    `stopped: "interrupted"`, and its `next` resumes it.
    """
    open_run(run_dir)  # a clear error before any client or emulator starts
    require_mode(run_dir, "direct", API_MODES)
    emulate = bind_emulated(run_dir, emulate)
    config = direct_emulator_config(emulate, emulate_rpm, emulate_itpm, emulate_faults)
    with api_client(emulate, async_client=True, max_retries=0, emulator_config=config) as client:
        receipt = run_direct(
            run_dir, client, limits=limits, concurrency=concurrency or DEFAULT_CONCURRENCY,
            max_cost=max_cost, max_attempts=max_attempts or DEFAULT_MAX_ATTEMPTS, progress=progress,
            handle_sigint=True,
        )
    raise_if_unreachable(receipt["counts"], next_command("direct", run_dir))
    stopped = receipt["stopped"]
    if direct_unfinished(receipt):
        nxt = next_command("direct", run_dir)
        if stopped == "max_cost":
            progress.warn(f"stopped before exceeding --max-cost {max_cost}: {receipt['counts']['not_run']} item(s) not run; "
                          "re-run with a higher --max-cost to continue")
        elif stopped == "interrupted":
            progress.stage(f"interrupted: {receipt['counts']['not_run']} item(s) not run; resume with `{nxt}`")
    else:
        nxt = next_command("merge", run_dir)
    return {"command": "direct", **receipt, "next": nxt}
