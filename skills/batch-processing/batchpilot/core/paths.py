"""Where the skill's own files are: found from this file, never from the current directory (the tool runs
inside the user's project)."""

from __future__ import annotations

from pathlib import Path

SKILL_DIR = Path(__file__).resolve().parent.parent.parent  # batchpilot/core/paths.py → the skill folder
TEMPLATES_DIR = SKILL_DIR / "templates"
SAMPLES_DIR = SKILL_DIR / "samples"
