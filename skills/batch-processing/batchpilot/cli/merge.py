"""`merge` and `report`: one validated table in input order, then a Markdown and an HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from batchpilot.cli.options import quiet

RUN_ARG = click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))


@click.command()
@RUN_ARG
@click.option("-f", "--format", "formats", type=click.Choice(["jsonl", "csv", "md"]), multiple=True,
              help="Also write merged.csv / merged.md (repeatable); merged.jsonl is always written.")
@click.pass_context
def merge(ctx: click.Context, run_dir: Path, formats: tuple[str, ...]) -> None:
    """Merge a run's results into merged.jsonl (input order, validated) and summary.json.

    Example: batchpilot merge .batchpilot/runs/review --format csv
    """
    from batchpilot.cli.main import emit
    from batchpilot.results.merge import merge_run
    from batchpilot.core.progress import Progress

    progress = Progress(quiet(ctx))
    summary = merge_run(run_dir, formats or ("jsonl",), progress=progress)
    if summary["unknown_results"]:
        progress.warn(f"{summary['unknown_results']} result record(s) name items that are not in this run; ignored")
    if summary["malformed_results"]:
        progress.warn(f"{summary['malformed_results']} result record(s) lack a custom_id or result; ignored")
    emit({
        "command": "merge",
        "run": str(run_dir),
        "items": summary["items"],
        "counts": summary["counts"],
        "error_types": summary["error_types"],
        "unknown_results": summary["unknown_results"],
        "cost_usd": summary["cost_usd"],
        "files": summary["files"],
        "next": summary["next"],
    })


@click.command()
@RUN_ARG
@click.pass_context
def report(ctx: click.Context, run_dir: Path) -> None:
    """Write report.md and a self-contained report.html (merging first when the results are newer).

    Example: batchpilot report .batchpilot/runs/review
    """
    from batchpilot.cli.main import emit
    from batchpilot.core.progress import Progress
    from batchpilot.report.markdown import write_report

    progress = Progress(quiet(ctx))
    files = write_report(run_dir, progress=progress)
    from batchpilot.core.files import read_json

    summary = read_json(run_dir / "summary.json", "summary")
    emit({"command": "report", "run": str(run_dir), "counts": summary.get("counts"), "files": files, "next": None})
