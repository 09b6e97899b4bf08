"""Helpers shared by the command modules: --var parsing, the suggested next command, --quiet."""


from __future__ import annotations

import shlex
from pathlib import Path

import click

from batchpilot.core.errors import BatchpilotError


def parse_vars(values: tuple[str, ...]) -> dict[str, str]:
    """`--var NAME=VALUE` pairs → dict, with an Error/Hint for a malformed one."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise BatchpilotError(f"--var {raw!r} is not NAME=VALUE", "e.g. --var labels=bug,feature,question")
        out[name.strip()] = value
    return out


def next_command(*words: str | Path) -> str:
    """A suggested next command line, quoted for a POSIX shell."""
    return "batchpilot " + " ".join(shlex.quote(str(w)) for w in words)


def quiet(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("quiet"))
