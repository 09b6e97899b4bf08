"""Line checks: does each finding's file and line range hold against the item it came from?

A finding is an object in the output's findings list (`batchpilot.results.exports.findings_field`) with
`file`, `line_start` and `line_end`. For an item that is a file (`kind` file or diff) the finding must name
that file (as given, a leading `./` aside) and satisfy `1 ≤ line_start ≤ line_end ≤` the file's length. For
an item from a change the length is the new side's, recorded at prepare time (`lines` in items.jsonl); for a
plain file it is counted now, when the file still has the size it had at prepare time (otherwise the length
is not checked, since the file is no longer the one reviewed). Records and lines carry no file, so their
findings are not checked. `check_findings` returns one problem per failing finding, which merge records in
the merged line as `finding_problems`, and which the report and the SARIF and GitHub exports honour.
"""

from __future__ import annotations

import functools
import os
from typing import Any

FILE_KINDS = ("file", "diff")
LINE_KEYS = ("file", "line_start", "line_end")


def repo_path(item: dict) -> str:
    """The item's path as SARIF and PR links want it: from the repository root. A change's path already is;
    a plain file's (relative to where batchpilot ran, or absolute) is made relative to the git repository
    that holds it (the nearest directory above it with a `.git`), and kept as given outside one."""
    path = str(item.get("path") or "")
    if item.get("kind") != "file" or not path:
        return path
    full = os.path.realpath(path)
    if not os.path.isfile(full):
        return path
    root = _repo_root(os.path.dirname(full))
    return os.path.relpath(full, root).replace(os.sep, "/") if root else path


@functools.lru_cache(maxsize=1024)
def _repo_root(directory: str) -> str | None:
    if os.path.exists(os.path.join(directory, ".git")):
        return directory
    parent = os.path.dirname(directory)
    return None if parent == directory else _repo_root(parent)


def _same_file(named: str, path: str) -> bool:
    def norm(p: str) -> str:
        p = p.replace("\\", "/")
        while p.startswith("./"):
            p = p[2:]
        return p

    return norm(named) == norm(path)


def file_lines(item: dict) -> int | None:
    """The item's length in lines: recorded for a change, counted for a file unchanged since prepare; else None."""
    if isinstance(item.get("lines"), int):
        return item["lines"]
    path = item.get("path")
    if item.get("kind") != "file" or not path:
        return None
    try:
        if os.path.getsize(path) != item.get("bytes"):
            return None
        count, last = 0, b"\n"
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 16), b""):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (0 if last == b"\n" else 1)
    except OSError:
        return None


def _problem(finding: dict, path: str, lines: int | None) -> str | None:
    named, start, end = (finding.get(k) for k in LINE_KEYS)
    if not isinstance(named, str) or not _same_file(named, path):
        return f"file {named!r} is not the reviewed file {path!r}"
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        return "line_start and line_end must be integers"
    if start < 1:
        return f"line_start {start} is before the first line"
    if end < start:
        return f"line_end {end} is before line_start {start}"
    if lines is not None and end > lines:
        return f"line_end {end} is past the end of {path} ({lines} lines)"
    return None


def check_findings(item: dict, output: Any, findings: str | None) -> list[dict] | None:
    """`[{"finding": index, "problem": text}, ...]` for the findings that fail, `[]` when all hold, None when
    there is nothing to check (no findings field, i.e. a schema without line fields, or an item that is not
    a file)."""
    if not findings or not isinstance(output, dict) or item.get("kind") not in FILE_KINDS or not item.get("path"):
        return None
    entries = output.get(findings)
    if not isinstance(entries, list):
        return None
    # Every finding is checked: under a schema that leaves the fields optional, one without them fails, since
    # it cannot be pointed at (the caller passes `findings` only for a schema with line fields).
    candidates = [(n, e) for n, e in enumerate(entries) if isinstance(e, dict)]
    if not candidates:
        return None if not entries else []
    lines = file_lines(item)
    out = []
    for n, entry in candidates:
        problem = _problem(entry, item["path"], lines)
        if problem:
            out.append({"finding": n, "problem": problem})
    return out


def located(finding: Any) -> bool:
    """True when a finding has a file and integer lines to point at (what a SARIF region or a link needs)."""
    return (isinstance(finding, dict) and isinstance(finding.get("file"), str)
            and all(isinstance(finding.get(k), int) and not isinstance(finding.get(k), bool) for k in LINE_KEYS[1:]))


def has_line_fields(schema: dict, findings: str | None) -> bool:
    """True when the schema's findings carry file, line_start and line_end (what SARIF needs)."""
    if not findings:
        return False
    props = (((schema.get("properties") or {}).get(findings) or {}).get("items") or {}).get("properties") or {}
    return all(k in props for k in LINE_KEYS)
