"""The export registry: `merge --format WORD` → the writer and the file it writes in the run directory.

Each writer takes (merged.jsonl, target, the run's schema) and returns the rows or results it wrote:
csv and md (`batchpilot.results.exports`), sarif (`batchpilot.results.sarif`) and github
(`batchpilot.results.github`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from batchpilot.results.exports import write_csv, write_md
from batchpilot.results.github import write_github
from batchpilot.results.sarif import write_sarif

# `merge --format WORD` -> the writer (merged.jsonl, target, schema) -> rows written; the target is export_name(WORD).
EXPORTERS: dict[str, Callable[[Path, Path, dict], int]] = {
    "csv": write_csv,
    "md": write_md,
    "sarif": write_sarif,
    "github": write_github,
}
EXPORT_FILES = {"csv": "merged.csv", "md": "merged.md", "sarif": "merged.sarif", "github": "pr-comment.md"}
FORMAT_WORDS = ("jsonl", *EXPORTERS)


def export_name(fmt: str) -> str:
    """The file an export format is written to in the run directory: `merged.csv`, `merged.sarif`, `pr-comment.md`."""
    return EXPORT_FILES[fmt]
