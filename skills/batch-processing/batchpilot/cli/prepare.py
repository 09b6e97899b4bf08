"""`plan` and `prepare`: look at a job before running it, and lay down its run directory."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import click

from batchpilot.cli.options import next_command, parse_vars, quiet
from batchpilot.prepare.items import DEFAULT_MAX_ITEM_BYTES

MODES = ("batch", "direct", "agents", "headless")


def job_options(fn: Callable) -> Callable:
    """Options shared by every command that starts from a template and items."""
    options = [
        click.option("-t", "--template", "template", required=True, help="Bundled template name or template directory."),
        click.option("-i", "--items", "items", required=True, help="Glob, directory, .jsonl, .csv, a file, or - for stdin lines."),
        click.option("-m", "--model", default=None, help="Model id (default: the template's)."),
        click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Output limit per item (default: the template's)."),
        click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Template variable; repeatable."),
        click.option("--content-field", default=None, help="Record field holding the item text (default: content, text or body; else the whole record)."),
        click.option("--max-item-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_ITEM_BYTES, show_default=True,
                     help="Larger items are skipped and listed."),
        click.option("--price-in", type=click.FloatRange(min=0), default=None, help="USD per million input tokens, for a model batchpilot does not know."),
        click.option("--price-out", type=click.FloatRange(min=0), default=None, help="USD per million output tokens, with --price-in."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _job_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    return {
        "template_ref": kw["template"], "items_src": kw["items"], "model": kw["model"], "max_tokens": kw["max_tokens"],
        "variables": parse_vars(kw["variables"]), "price_in": kw["price_in"], "price_out": kw["price_out"],
        "max_item_bytes": kw["max_item_bytes"], "content_field": kw["content_field"],
    }


def _skipped_summary(skipped: list) -> dict:
    return dict(sorted(Counter(reason for _, reason, _ in skipped).items()))


@click.command()
@job_options
@click.option("--urgent", is_flag=True, help="Results are needed within minutes (favours direct).")
@click.option("--needs-tools", is_flag=True, help="Items need tools or file access (favours agents).")
@click.option("--dependent", is_flag=True, help="Items depend on each other (favours sequential).")
@click.option("--count-tokens", is_flag=True, help="Ask the API's count_tokens endpoint (a sample of up to 50 requests).")
@click.option("--emulate", is_flag=True, help="With --count-tokens: ask the local emulator instead of the API.")
@click.pass_context
def plan(ctx: click.Context, urgent: bool, needs_tools: bool, dependent: bool, count_tokens: bool, emulate: bool, **kw: Any) -> None:
    """Estimate tokens, cost and time per mode, and recommend one. Writes nothing.

    Example: batchpilot plan --template code-review --items 'src/**/*.py'
    """
    from batchpilot.cli.main import emit
    from batchpilot.prepare.job import open_job
    from batchpilot.prepare.plan import Tally, build_plan
    from batchpilot.core.progress import Progress

    progress = Progress(quiet(ctx))
    job = open_job(require_price=False, **_job_kwargs(kw))
    output_estimate = job.template.output_tokens_estimate or max(1, int(job.max_tokens * 0.25))
    tally = Tally()
    sample: list[dict] = []
    for n, item in enumerate(job.items(), 1):
        params = job.builder.params(item)
        tally.add(params, output_estimate)
        if count_tokens and len(sample) < 50:
            sample.append(params)
        progress.update(n, None, "items")
    progress.done()
    if tally.requests == 0:
        from batchpilot.core.errors import BatchpilotError

        from batchpilot.prepare.items import describe_skipped

        raise BatchpilotError(f"no items to process ({describe_skipped(job.skipped)})",
                              "point --items at text files or records with content")
    source = "local estimate (characters / 4)"
    if count_tokens:
        from batchpilot.prepare.plan import estimate_input_tokens
        from batchpilot.api.count_tokens import count_sample

        counted = count_sample(sample, emulate)
        local = sum(estimate_input_tokens(p) for p in sample)
        scale = counted / local if local else 1.0
        tally.input_tokens = round(tally.input_tokens * scale)
        source = f"count_tokens API on {len(sample)} of {tally.requests} requests, scaled"
    body = build_plan(tally, job.prices, job.model, needs_tools or job.template.needs_tools, urgent, dependent, source)
    warnings = []
    if job.prices is None:
        warnings.append(f"unknown model {job.model!r}: costs are null; spending commands refuse it unless --price-in and --price-out are given")
        progress.warn(warnings[-1])
    mode = body["recommended"]["mode"]
    run_mode = mode if mode in MODES else None
    nxt = None
    if run_mode:
        words = ["prepare", "--template", kw["template"], "--items", kw["items"], "--mode", run_mode]
        if kw["model"]:
            words += ["--model", kw["model"]]
        for v in kw["variables"]:
            words += ["--var", v]
        nxt = next_command(*words)
    emit({"command": "plan", "template": job.template.name, **body, "skipped": _skipped_summary(job.skipped),
          "warnings": warnings, "next": nxt})


@click.command()
@job_options
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: .batchpilot/runs/<timestamp>-<template>).")
@click.option("--mode", type=click.Choice(MODES), default="batch", show_default=True,
              help="Executor the requests are shaped for (batch uses the 1-hour prompt cache).")
@click.pass_context
def prepare(ctx: click.Context, run_dir: Path | None, mode: str, **kw: Any) -> None:
    """Create a run directory: run.json, items.jsonl, requests.jsonl, schema.json, journal.jsonl.

    Example: batchpilot prepare --template code-review --items 'src/**/*.py' --run .batchpilot/runs/review
    """
    from batchpilot.cli.main import emit
    from batchpilot.prepare.job import open_job
    from batchpilot.core.progress import Progress
    from batchpilot.rundir.create import create_run, default_run_dir

    progress = Progress(quiet(ctx))
    job = open_job(mode=mode, **_job_kwargs(kw))
    target = run_dir or default_run_dir(job.template.name)
    progress.stage(f"preparing {target} ...")
    result = create_run(target, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    for source, reason, detail in job.skipped[:20]:
        progress.stage(f"skipped {source}: {reason} ({detail})")
    if len(job.skipped) > 20:
        progress.stage(f"... and {len(job.skipped) - 20} more, listed in skipped.jsonl")
    run = result.run_dir
    emit({
        "command": "prepare",
        "run": str(run),
        "unchanged": result.unchanged,
        "items": result.item_count,
        "skipped": dict(result.skipped),
        "model": job.model,
        "mode": mode,
        "files": {name: str(run / name) for name in ("run.json", "items.jsonl", "requests.jsonl", "schema.json", "journal.jsonl", "skipped.jsonl")},
        "next": next_for_mode(mode, run),
    })


def next_for_mode(mode: str, run: Path) -> str | None:
    """The command that executes a prepared run in `mode`, if this version has it."""
    from batchpilot.cli.main import COMMANDS

    command = {"batch": "submit", "direct": "direct", "agents": "fanout", "headless": "headless"}[mode]
    return next_command(command, run) if command in COMMANDS else None
