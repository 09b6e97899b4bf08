"""Where the skill's own files are: found from this file, never from the current directory (the tool runs
inside the user's project).

In the skill folder (or a plugin) the templates and samples sit beside the package; a wheel (`pip install .`)
carries them inside it, as batchpilot/templates and batchpilot/samples: the copy inside the package wins.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # batchpilot/core/paths.py → the package
SKILL_DIR = PACKAGE_DIR.parent  # the skill folder (site-packages for a wheel install)


def _data_dir(name: str) -> Path:
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else SKILL_DIR / name


TEMPLATES_DIR = _data_dir("templates")
SAMPLES_DIR = _data_dir("samples")
RUNS_HOME = Path(".batchpilot") / "runs"  # where runs go by default, under the current directory


def default_run_dir(template_name: str) -> Path:
    """`.batchpilot/runs/<timestamp>-<template>` under the current directory, as an absolute path (receipts
    print it, and a suggested command must run from any directory)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path.cwd() / RUNS_HOME / f"{stamp}-{template_name}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


WORKER_AGENT = "batch-item"  # agents/batch-item.md in the plugin: Read and Write only
FALLBACK_AGENT = "general-purpose"  # a bare skill has no agent of its own; never Explore or Plan (they cannot write)


def invoked_skill_dir() -> Path:
    """The skill folder as the caller named it (the shim passes its unresolved path: a plugin may reach the skill
    through a symlink), else this package's."""
    shim = os.environ.get("BATCHPILOT_SHIM")
    return Path(shim).parent.parent if shim else SKILL_DIR


def worker_agent() -> str:
    """The subagent_type for agents-mode tasks: the plugin's worker agent (`<plugin>:batch-item`, see
    https://docs.claude.com/en/docs/claude-code/plugins-reference) when this skill sits in a plugin that ships it,
    else general-purpose."""
    for skill in (invoked_skill_dir(), SKILL_DIR):
        root = skill.parent.parent  # <plugin>/skills/<skill>
        manifest = root / ".claude-plugin" / "plugin.json"
        if (root / "agents" / f"{WORKER_AGENT}.md").is_file() and manifest.is_file():
            try:
                name = json.loads(manifest.read_text(encoding="utf-8")).get("name")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(name, str) and name:
                return f"{name}:{WORKER_AGENT}"
    return FALLBACK_AGENT
