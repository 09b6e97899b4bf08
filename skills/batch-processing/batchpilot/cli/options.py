"""Option parsing shared by the command modules: the RUN argument, --emulate, the job options, --var, --quiet."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from batchpilot.core.errors import BatchpilotError
from batchpilot.prepare.limits import DEFAULT_MAX_ITEM_BYTES

# The words of `--format` (batchpilot.results.formats.FORMAT_WORDS; a test keeps the two equal): spelled out
# here so that `--help` does not load the exporters.
FORMATS = ("jsonl", "csv", "md", "sarif", "github")
FORMAT_HELP = ("Also write merged.csv / merged.md / merged.sarif (SARIF 2.1.0) / pr-comment.md (github: a PR comment "
               "body); repeatable. sarif and github need findings with file and line fields.")


def format_option(fn: Callable) -> Callable:
    return click.option("-f", "--format", "formats", type=click.Choice(FORMATS), multiple=True, help=FORMAT_HELP)(fn)


RUN_ARG = click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path, resolve_path=True))


def emulate_option(fn: Callable) -> Callable:
    return click.option("--emulate", is_flag=True,
                        help="Use the local emulator (its state is kept in RUN/emulator/) instead of the API. The run remembers "
                             "it: needed on its first API command only, refused on a run that uses the real API.")(fn)


def job_options(fn: Callable) -> Callable:
    """Options shared by every command that starts from a template and items."""
    options = [
        click.option("-t", "--template", "template", required=True, help="Bundled template name or template directory."),
        click.option("-i", "--items", "items", required=True, help="Glob, directory, .jsonl, .csv, a file, - for stdin lines, or a change: git:REV, git:A..B, git:staged."),
        click.option("-m", "--model", default=None, help="Model id (default: the template's)."),
        click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Output limit per item (default: the template's)."),
        click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Template variable; repeatable."),
        click.option("--content-field", default=None, help="Record field holding the item text (default: content, text or body; else the whole record)."),
        click.option("--file-field", default=None, help="JSONL/CSV field naming a PDF or image file to attach (path relative to the records file)."),
        click.option("--upload", type=click.Choice(["auto", "inline", "files"]), default="auto", show_default=True,
                     help="How PDFs and images travel: inline base64, or uploaded once to the Files API and referenced by file_id "
                          "(auto: files when a batch job's inline payload would be many times the batch limit)."),
        click.option("--keep-uploads", is_flag=True, help="With --upload files: keep the uploaded files when the run ends."),
        click.option("--max-item-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_ITEM_BYTES, show_default=True,
                     help="Larger items are skipped and listed."),
        click.option("--price-in", type=click.FloatRange(min=0), default=None, help="USD per million input tokens, for a model batchpilot does not know."),
        click.option("--cache", type=click.Choice(["auto", "1h", "5m", "none"]), default="auto", show_default=True,
                     help="Prompt cache for the shared instructions: auto (5-minute in direct mode; in batch mode "
                          "the cheapest for the job's size: none for one request, 5-minute for a small batch, "
                          "1-hour for a large one), or force one, or none."),
        click.option("--price-out", type=click.FloatRange(min=0), default=None, help="USD per million output tokens, with --price-in."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def job_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """The values of `job_options` as the keyword arguments of `batchpilot.prepare.job.open_job`."""
    return {
        "template_ref": kw["template"], "items_src": kw["items"], "model": kw["model"], "max_tokens": kw["max_tokens"],
        "variables": parse_vars(kw["variables"]), "price_in": kw["price_in"], "price_out": kw["price_out"],
        "max_item_bytes": kw["max_item_bytes"], "content_field": kw["content_field"],
        "file_field": kw["file_field"], "upload": kw["upload"], "keep_uploads": kw["keep_uploads"],
        "cache": kw.get("cache", "auto"),
    }


def parse_vars(values: tuple[str, ...]) -> dict[str, str]:
    """`--var NAME=VALUE` pairs → dict, with an Error/Hint for a malformed one."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise BatchpilotError(f"--var {raw!r} is not NAME=VALUE", "e.g. --var labels=bug,feature,question")
        out[name.strip()] = value
    return out


def quiet(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("quiet"))
