"""`templates list | show NAME | init NAME [--from NAME]`: find a template, inspect one, start your own."""

from __future__ import annotations

import click

from batchpilot.cli.main import emit


@click.group()
def templates() -> None:
    """List, show and scaffold templates.

    Example: batchpilot templates show classify
    """


@templates.command("list")
def list_templates() -> None:
    """List the bundled templates with their descriptions and models.

    Example: batchpilot templates list
    """
    # The catalogue is imported when a subcommand runs (it loads the template and schema checks).
    from batchpilot.prepare.catalog import list_templates as listing

    emit(listing())


@templates.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Show a template's files, variables, model guidance and schema warnings.

    Example: batchpilot templates show security-review
    """
    from batchpilot.prepare.catalog import show_template

    emit(show_template(name, warn=lambda line: click.echo(f"warning: {line}", err=True)))


@templates.command("init")
@click.argument("name")
@click.option("--from", "source", default=None, metavar="TEMPLATE",
              help="Copy this template (bundled name or directory) instead of the minimal starter.")
def init(name: str, source: str | None) -> None:
    """Create ./NAME/, a template of your own that passes validation as it is.

    Example: batchpilot templates init ticket-triage --from classify
    """
    from batchpilot.prepare.catalog import init_template

    emit(init_template(name, source))
