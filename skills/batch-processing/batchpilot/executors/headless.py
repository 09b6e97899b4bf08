"""Headless mode: each item through its own `claude -p` subprocess, a bounded pool of them at a time.

Per item: the prompt (instructions + the inlined item, from requests.jsonl) goes on stdin, never argv, and
the run's schema.json goes in `--json-schema`, so Claude Code returns the answer through its
StructuredOutput tool. `--output-format json` prints one result object; what matters in it:

* `structured_output` — the schema-checked answer. Its *absence* with `is_error: false` means the model
  never called the tool (Claude Code then ends with `subtype: success` anyway): the text in `result` is
  recorded and judged like any answer, usually as invalid;
* `is_error`, `subtype`, `api_error_status` — failures: errored records with an API-style error type, so
  merge and retry treat them like the other executors' (`error_max_structured_output_retries` included);
* `total_cost_usd`, `usage` — kept on the record; `--max-cost` is the run's budget: it stops launching new
  items once the costs reported for the run (earlier invocations included) reach it (items already running
  finish, so it can be exceeded by at most `parallel - 1` items);
* `result: "Not logged in ..."` — an account problem, not an item's: nothing is recorded for it, no new
  item starts, and the command ends with an Error/Hint.

A per-item timeout kills the whole process group. The run resumes like the others: items with a valid
output in results.jsonl are skipped. This module never calls the API itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.progress import Progress
from batchpilot.core.files import append_jsonl
from batchpilot.core.models import USAGE_KEYS
from batchpilot.core.shell import next_command
from batchpilot.results.judge import RunView, open_view
from batchpilot.results.outcomes import ItemState, scan_outcomes
from batchpilot.executors.prompts import headless_prompt, iter_prepared
from batchpilot.api.failures import error_type_for_status
from batchpilot.rundir.records import errored, result_record
from batchpilot.rundir.journal import journal
from batchpilot.rundir.lock import holds_run_lock
from batchpilot.executors.direct.budget import billed_so_far

CLAUDE_ENV = "BATCHPILOT_CLAUDE"
DEFAULT_CLAUDE = "claude"
DEFAULT_PARALLEL = 4
DEFAULT_TIMEOUT = 600.0
MAX_LISTED_ERRORS = 10
NOT_LOGGED_IN = "not logged in"
HEADLESS_TOOLS = "Read"  # the built-in tools a call may use (see claude_command)
SCRATCH_DIR = "headless-cwd"  # each call's working directory: empty, inside the run, not the user's project


def find_claude(flag: str | None = None) -> str:
    """The Claude Code executable: --claude > $BATCHPILOT_CLAUDE > `claude` on PATH."""
    wanted = flag or os.environ.get(CLAUDE_ENV) or DEFAULT_CLAUDE
    found = shutil.which(wanted)
    if found is None:
        where = "--claude" if flag else (CLAUDE_ENV if os.environ.get(CLAUDE_ENV) else "PATH")
        raise BatchpilotError(
            f"the Claude Code CLI {wanted!r} was not found (from {where})",
            "install it (npm install -g @anthropic-ai/claude-code), or pass --claude PATH or set "
            f"{CLAUDE_ENV}; without it, use agents, direct or batch mode",
        )
    return found


def claude_command(claude: str, schema: dict, model: str | None, bare: bool) -> list[str]:
    """argv of one call: print mode, JSON result, the schema; the prompt itself goes on stdin.

    Items are untrusted input, so each call gets the least it needs: the item is inlined in the prompt and
    the answer comes back through the StructuredOutput tool, so of the built-in tools only `Read` is offered
    (`--tools`: no Bash, no Edit or Write, no web tools), and no MCP server from the user's configuration
    (`--strict-mcp-config`). Flags: https://docs.claude.com/en/docs/claude-code/cli-reference
    """
    cmd = [claude, "-p", "--output-format", "json", "--json-schema", json.dumps(schema, separators=(",", ":")),
           "--no-session-persistence", "--tools", HEADLESS_TOOLS, "--strict-mcp-config"]
    if model:
        cmd += ["--model", model]
    if bare:
        cmd.append("--bare")
    return cmd


def item_command(cmd: list[str], item: dict) -> list[str]:
    """`cmd` for one item; a document or image item also gets its file's folder and the Read tool.

    The prompt names the file's absolute path and Claude Code's Read tool opens PDFs and images. Read needs no
    approval, but Claude Code scopes its file tools to the working directories, so the file's folder is added
    with `--add-dir`, and Read is allowed by name so a narrower tool list still keeps it
    (https://code.claude.com/docs/en/cli-reference: --add-dir, --allowedTools)."""
    media = item.get("media") if isinstance(item, dict) else None
    if not media or not media.get("path"):
        return cmd
    return [*cmd, "--add-dir", os.path.dirname(media["path"]), "--allowedTools", "Read"]


@dataclass
class Call:
    """What one subprocess did."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


class Pool:
    """Runs subprocesses and can kill them all (each in its own process group)."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.closing = False

    def call(self, cmd: list[str], prompt: str, timeout: float, env: dict | None, cwd: str | None) -> Call:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, encoding="utf-8", errors="replace", env=env, cwd=cwd,
                                start_new_session=True)
        with self._lock:
            self._procs.add(proc)
        try:
            try:
                out, err = proc.communicate(prompt, timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                self._kill(proc)
                out, err = proc.communicate()
                timed_out = True
        finally:
            with self._lock:
                self._procs.discard(proc)
        return Call(proc.returncode, out or "", err or "", timed_out, time.monotonic() - start)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self) -> None:
        self.closing = True
        with self._lock:
            for proc in list(self._procs):
                self._kill(proc)


def _parse(stdout: str) -> dict | None:
    text = stdout.strip()
    for candidate in (text, text.rsplit("\n", 1)[-1]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def interpret(call: Call, timeout: float) -> tuple[dict | None, float, bool]:
    """(the result of one call or None, its reported cost, whether the account is not logged in)."""
    if call.timed_out:
        return errored("timeout_error", f"claude -p did not finish within {timeout:g} s"), 0.0, False
    data = _parse(call.stdout)
    if data is None:
        detail = (call.stderr.strip() or call.stdout.strip() or "no output")[-300:]
        return errored("cli_error", f"claude -p exited with {call.returncode} without a JSON result: {detail}"), 0.0, False
    cost = data.get("total_cost_usd")
    cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0
    text = data.get("result") if isinstance(data.get("result"), str) else ""
    if data.get("is_error") and NOT_LOGGED_IN in text.lower():
        return None, cost, True
    extra = {k: data[k] for k in ("session_id", "subtype", "num_turns") if k in data}
    usage = data.get("usage")
    if isinstance(usage, dict):
        extra["usage"] = {k: v for k, v in usage.items() if k in USAGE_KEYS and type(v) is int}
    extra["cost_usd"] = cost
    if data.get("is_error") or call.returncode not in (0, None):
        status = data.get("api_error_status")
        if data.get("subtype") == "error_max_structured_output_retries":
            kind = "structured_output_error"
            text = "; ".join(map(str, data.get("errors") or [])) or "no valid structured output"
        elif isinstance(status, int):
            kind = error_type_for_status(status)
        else:
            kind = "cli_error"
        message = text or "; ".join(map(str, data.get("errors") or [])) or f"subtype {data.get('subtype')}"
        return {**errored(kind, message[:500]), **extra}, cost, False
    # The key, not is_error, says whether the answer came through the StructuredOutput tool.
    output = data["structured_output"] if "structured_output" in data else text
    return {"type": "succeeded", "output": output, **extra}, cost, False


@holds_run_lock
def run_headless(run_dir: Path, parallel: int = DEFAULT_PARALLEL, claude: str | None = None, model: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_cost: float | None = None, bare: bool = False,
                 env: dict | None = None, cwd: str | None = None,
                 progress: Callable[[int, int], Any] | None = None) -> dict:
    """Run every item without a valid output through `claude -p`, `parallel` at a time; return the receipt."""
    if parallel < 1:
        raise BatchpilotError(f"--parallel {parallel} must be at least 1", "e.g. --parallel 4")
    executable = find_claude(claude)
    view = open_view(Path(run_dir).resolve())
    run = view.run_dir
    model = model or view.manifest.get("model")
    cmd = claude_command(executable, view.schema, model, bare)
    if cwd is None:  # not the user's project: Claude Code reads CLAUDE.md and settings from where it starts
        (run / SCRATCH_DIR).mkdir(exist_ok=True)
        cwd = str(run / SCRATCH_DIR)
    states = scan_outcomes(view)
    todo, total = [], 0
    for item, params in iter_prepared(run):
        total += 1
        state = states.get(item["custom_id"])
        if not (state and state.done):
            todo.append((item["custom_id"], params, item))
    journal(run, "headless_started", pending=len(todo), parallel=parallel, model=model)
    tally = HeadlessTally()
    # The budget is the run's: what claude reported for the run's earlier items counts against --max-cost.
    tally.spent_before = billed_so_far(run, None)[0]
    pool = Pool()
    stopped: str | None = None
    with ThreadPoolExecutor(max_workers=parallel) as executor:
        running: dict[Future, str] = {}
        queue = iter(todo)
        try:
            while True:
                if stopped is None and max_cost is not None and tally.spent_before + tally.cost >= max_cost:
                    stopped = "budget"  # the run's earlier invocations already spent it
                while stopped is None and len(running) < parallel:
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    cid, params, item = nxt
                    running[executor.submit(pool.call, item_command(cmd, item), headless_prompt(params, item), timeout,
                                             env, cwd)] = cid
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    cid = running.pop(future)
                    result, cost, logged_out = interpret(future.result(), timeout)
                    tally.cost += cost
                    if logged_out:
                        stopped = stopped or "not_logged_in"
                        tally.logged_out += 1
                        continue
                    state = states.setdefault(cid, ItemState())
                    state.attempts += 1
                    record = result_record(cid, result, state.attempts, "headless")
                    append_jsonl(run / "results.jsonl", [record])
                    tally.add(cid, result, view)
                    if progress:
                        progress(tally.done, len(todo))
                if stopped is None and max_cost is not None and tally.spent_before + tally.cost >= max_cost:
                    stopped = "budget"
        except BaseException:
            pool.kill_all()
            raise
    journal(run, "headless_finished", counts=tally.counts(), cost_usd=round(tally.cost, 6), stopped=stopped)
    if stopped == "not_logged_in":
        raise BatchpilotError(
            f"claude is not logged in ({executable}); {tally.done} item(s) finished before it said so",
            "run `claude` once and log in with /login, or export ANTHROPIC_API_KEY; then re-run this command "
            "(finished items are skipped)",
        )
    return {
        "command": "headless",
        "run": str(run),
        "items": total,
        "already_done": total - len(todo),
        "attempted": tally.done,
        "counts": tally.counts(),
        "cost_usd": round(tally.cost, 6),
        "run_spent_usd": round(tally.spent_before + tally.cost, 6),
        "budget_left_usd": None if max_cost is None else round(max(0.0, max_cost - tally.spent_before - tally.cost), 6),
        "stopped": stopped,
        "not_started": len(todo) - tally.done - tally.logged_out,
        "errors": tally.errors,
        "next": next_command("merge", run),
    }


@dataclass
class HeadlessTally:
    """Counts and money of one headless invocation (the receipt's `counts`, `cost_usd` and `errors`)."""

    done: int = 0
    logged_out: int = 0
    cost: float = 0.0
    spent_before: float = 0.0  # what the run's earlier invocations reported
    succeeded: int = 0
    invalid: int = 0
    errored: int = 0
    errors: list = field(default_factory=list)

    def add(self, cid: str, result: dict, view: RunView) -> None:
        self.done += 1
        if result["type"] == "succeeded":
            error = view.judge(result)[1]
            if error is None:
                self.succeeded += 1
                return
            self.invalid += 1
            kind, message = "invalid", error
        else:
            self.errored += 1
            inner = result["error"]["error"]
            kind, message = inner["type"], inner["message"]
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"id": cid, "type": kind, "message": message[:300]})

    def counts(self) -> dict:
        return {"succeeded": self.succeeded, "invalid": self.invalid, "errored": self.errored}


def headless_job(run_dir: Path, parallel: int, claude: str | None, model: str | None, timeout: float,
                 max_cost: float | None, bare: bool, progress: Progress) -> dict:
    """The `headless` receipt: every item without a valid result through `claude -p`, `parallel` at a time."""
    progress.stage(f"running {run_dir} through claude -p, {parallel} at a time ...")
    receipt = run_headless(run_dir, parallel, claude, model, timeout, max_cost, bare,
                           progress=lambda done, total: progress.update(done, total, "items"))
    progress.done()
    return receipt
