"""Reviews: the emulated "model" cites lines of the file it was shown, as a careful reviewer would.

Every finding-like object of a generated answer (one with `file`, `line_start` and `line_end`) is aimed:

* when the last user message holds a unified diff between `<item_diff>` tags (the diff variants of the
  review templates), at the diff's new path and at one of its added lines, in turn;
* else, when it holds a file between `<item_content>` tags and names it ("... this file: PATH", as the
  review templates say), at that path and at a line inside the file.

Both are read here from the message text, independently of the client's own parsers, so the merger's line
checks and the SARIF export are tested against a second reading. Other answers are left as the schema
generator made them (so a finding may name a file or lines that do not exist, as a careless model would).
"""

from __future__ import annotations

import codecs
import re
from typing import Any

DIFF_RE = re.compile(r"<item_diff>\n(.*?)\n</item_diff>", re.S)
CONTENT_RE = re.compile(r"<item_content>\n(.*?)\n</item_content>", re.S)
NAMED_RE = re.compile(r"this (?:[a-z]+ )?file[^:\n]*: (\S+)")
HUNK_RE = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
FINDING_KEYS = ("file", "line_start", "line_end")


def _last_user_text(params: dict) -> str:
    for message in reversed(params.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _unquote(text: str) -> str:
    """A path git wrote C-quoted (`"b/q\\"uote.py"`, octal escapes for bytes) back to its text."""
    raw = codecs.escape_decode(text[1:-1].encode("utf-8"))[0]
    return raw.decode("utf-8", errors="replace")


def added_lines(diff: str) -> tuple[str | None, list[int]]:
    """(the new path from `+++ b/PATH`, the new-side numbers of the added lines) of a one-file unified diff."""
    path, added, new = None, [], 0
    for line in diff.split("\n"):  # git cuts lines at `\n` only; a CR inside a line is content
        if not new and line.startswith("+++ "):
            target = line[4:].removesuffix("\t")  # git ends the line with a TAB when the path holds a space
            target = _unquote(target) if target.startswith('"') else target
            path = target[2:] if target.startswith("b/") else None
            continue
        head = HUNK_RE.match(line)
        if head:
            new = int(head.group(1))
        elif new and line.startswith("+"):
            added.append(new)
            new += 1
        elif new and line.startswith(" "):
            new += 1
    return path, added


def _findings(value: Any) -> list[dict]:
    found: list[dict] = []
    if isinstance(value, dict):
        if all(k in value for k in FINDING_KEYS):
            found.append(value)
        for child in value.values():
            found += _findings(child)
    elif isinstance(value, list):
        for child in value:
            found += _findings(child)
    return found


def _target(text: str) -> tuple[str | None, list[int]]:
    """(the path, the lines a finding may cite) that the message offers, or (None, [])."""
    match = DIFF_RE.search(text)
    if match:
        return added_lines(match.group(1).replace("<\\/item_diff>", "</item_diff>"))
    content, named = CONTENT_RE.search(text), NAMED_RE.search(CONTENT_RE.sub("", text))
    if content and named:
        return named.group(1), list(range(1, content.group(1).count("\n") + 2))
    return None, []


def aim_at_change(value: Any, params: dict) -> Any:
    """`value` with its findings moved onto the lines of the change (or the file) in the request."""
    path, added = _target(_last_user_text(params))
    if path is None or not added:
        return value
    for n, finding in enumerate(_findings(value)):
        line = added[(n * 7) % len(added)]
        if isinstance(finding.get("file"), str):
            finding["file"] = path
        if isinstance(finding.get("line_start"), int) and isinstance(finding.get("line_end"), int):
            finding["line_start"] = finding["line_end"] = line
    return value
