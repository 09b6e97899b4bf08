"""The `batchpilot` command line: a click group that loads each command's module only when it runs.

Conventions every command follows (README.md, "Usage"):

* stdout carries exactly one JSON object, the receipt, printed by `emit` (indent 2);
* progress and warnings go to stderr;
* exit 0 when the command did its job (item failures are data), 1 when it failed (`Error:` + `Hint:`),
  2 for a usage error; no traceback for anything the user can fix.

Commands live in `batchpilot.cli.*` and are imported lazily so that `--help` and the commands that
never call the API start fast and never import the `anthropic` SDK.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

import click

from batchpilot.version import __version__
from batchpilot.core.errors import BatchpilotError, from_os_error

# name -> (module, attribute, one-line help). The help text is here so `batchpilot --help` imports nothing.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("batchpilot.cli.prepare", "plan", "Estimate tokens, cost and time per mode; recommend one."),
    "prepare": ("batchpilot.cli.prepare", "prepare", "Create a run directory: items, requests, manifest."),
    "run": ("batchpilot.cli.run", "run", "Prepare, execute, merge and report a job in one command."),
    "demo": ("batchpilot.cli.demo", "demo", "Offline rehearsal: the sample job end to end on the emulator."),
    "templates": ("batchpilot.cli.templates", "templates", "List, show and scaffold templates."),
    "submit": ("batchpilot.cli.batch", "submit", "Batch mode: shard the requests and create the Message Batches."),
    "status": ("batchpilot.cli.batch", "status", "Batch mode: show (or --wait for) the run's batches."),
    "fetch": ("batchpilot.cli.batch", "fetch", "Batch mode: download ended batches' results into results.jsonl."),
    "cancel": ("batchpilot.cli.batch", "cancel", "Batch mode: cancel open batches, then fetch what finished."),
    "batches": ("batchpilot.cli.batch", "batches", "List the account's batches and the run each belongs to."),
    "retry": ("batchpilot.cli.retry", "retry", "Re-run only the items whose last outcome a retry can fix."),
    "direct": ("batchpilot.cli.direct", "direct", "Direct mode: send the requests to the Messages API at the rate limit."),
    "fanout": ("batchpilot.cli.agents", "fanout", "Agents mode: write per-item prompt files, print a wave of tasks."),
    "collect": ("batchpilot.cli.agents", "collect", "Agents mode: validate and record result files, print the next wave."),
    "headless": ("batchpilot.cli.headless", "headless", "Headless mode: run the items through `claude -p` subprocesses."),
    "merge": ("batchpilot.cli.merge", "merge", "Merge results into one validated table in input order."),
    "report": ("batchpilot.cli.merge", "report", "Write report.md and a self-contained report.html."),
    "runs": ("batchpilot.cli.runs", "runs", "List this project's runs, their state and the next command."),
    "emulate": ("batchpilot.cli.emulate", "emulate", "Serve the local Anthropic API emulator."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use, and whose errors end as Error:/Hint: lines."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in COMMANDS.items()])

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        extra.pop("standalone_mode", None)
        for word in sys.argv[1:] if args is None else args:
            try:
                str(word).encode("utf-8")
            except UnicodeEncodeError:  # undecodable bytes on argv: every receipt and run file is UTF-8
                shown = os.fsencode(word).decode("utf-8", "backslashreplace")
                fail(f"the argument '{shown}' is not UTF-8 text", "pass arguments (and file names) as UTF-8", 2)
        try:
            super().main(args=args, prog_name=prog_name or "batchpilot", standalone_mode=False, **extra)
        except BatchpilotError as exc:
            fail(exc.message, exc.hint, exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: interrupted", err=True)
            click.echo("Hint: re-run the same command; it resumes from the run directory", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            words = list(sys.argv[1:] if args is None else args)
            sub = next((w for w in words if w in COMMANDS), None)
            command = exc.ctx.command_path if exc.ctx else "batchpilot" + (f" {sub}" if sub else "")
            fail(exc.format_message(), f"see `{command} --help`", 2)
        except click.ClickException as exc:
            fail(exc.format_message(), "see `batchpilot --help`", exc.exit_code or 1)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except OSError as exc:
            # One boundary for the file system's refusals (read-only, full disk, permissions) in every command.
            error = from_os_error(exc)
            fail(error.message, error.hint, error.exit_code)
        sys.exit(0)


def fail(message: str, hint: str, code: int) -> None:
    """Print the Error:/Hint: pair on stderr and exit with `code`."""
    click.echo(f"Error: {message}", err=True)
    if hint:
        click.echo(f"Hint: {hint}", err=True)
    sys.exit(code)


ROW_WIDTH = 320


def format_receipt(value: Any, depth: int = 0) -> str:
    """A receipt as printed: indented JSON, except that small flat objects (a task, a count table) sit on one
    line. An agent reads every receipt into its context, so whitespace is bytes it pays for per item."""
    if isinstance(value, (dict, list)) and value:
        flat = all(not isinstance(v, (dict, list)) or not v for v in (value.values() if isinstance(value, dict) else value))
        line = json.dumps(value, ensure_ascii=False, default=str)
        if flat and len(line) + 2 * depth <= ROW_WIDTH:
            return line
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(value, dict):
            body = ",\n".join(f"{inner}{json.dumps(k, ensure_ascii=False)}: {format_receipt(v, depth + 1)}" for k, v in value.items())
            return "{\n" + body + "\n" + pad + "}"
        body = ",\n".join(inner + format_receipt(v, depth + 1) for v in value)
        return "[\n" + body + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def emit(receipt: dict) -> None:
    """Print a command's receipt: one JSON object on stdout (`emulated` added for a run's receipt)."""
    from batchpilot.rundir.guard import label  # loaded only once a command has its receipt

    click.echo(format_receipt(label(receipt)))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchpilot")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool) -> None:
    """Run one prompt template over many items with Claude, then merge the results into one validated table.

    Every command prints one JSON receipt on stdout and its progress on stderr.
    Start with `batchpilot plan --template code-review --items 'src/**/*.py'`.
    """
    ctx.obj = {"quiet": quiet}


def main() -> None:
    """Console-script entry point."""
    cli.main()
