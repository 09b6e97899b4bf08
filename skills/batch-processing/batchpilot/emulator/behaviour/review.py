"""Reviews of a change: the emulated "model" cites lines the change touched, as a careful reviewer would.

When a request's last user message holds a unified diff between `<item_diff>` tags (what the diff variants
of the review templates send), every finding-like object of the generated answer — one with `file`,
`line_start` and `line_end` — is pointed at the diff's new path and at one of its added lines, in turn.
The diff is parsed here from the message text, independently of the client's own parser, so the merger's
line checks and the SARIF export are tested against a second reading of the same diff. Answers without a
diff in the message are left as the schema generator made them.
"""

from __future__ import annotations

import re
from typing import Any

DIFF_RE = re.compile(r"<item_diff>\n(.*?)\n</item_diff>", re.S)
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


def added_lines(diff: str) -> tuple[str | None, list[int]]:
    """(the new path from `+++ b/PATH`, the new-side numbers of the added lines) of a one-file unified diff."""
    path, added, new = None, [], 0
    for line in diff.splitlines():
        if not new and line.startswith("+++ "):
            target = line[4:]
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


def aim_at_change(value: Any, params: dict) -> Any:
    """`value` with its findings moved onto the changed lines of the diff in the request, when it has one."""
    match = DIFF_RE.search(_last_user_text(params))
    if not match:
        return value
    path, added = added_lines(match.group(1).replace("<\\/item_diff>", "</item_diff>"))
    if path is None or not added:
        return value
    for n, finding in enumerate(_findings(value)):
        line = added[(n * 7) % len(added)]
        if isinstance(finding.get("file"), str):
            finding["file"] = path
        if isinstance(finding.get("line_start"), int) and isinstance(finding.get("line_end"), int):
            finding["line_start"] = finding["line_end"] = line
    return value
