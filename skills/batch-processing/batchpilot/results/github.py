"""GitHub: merged.jsonl → `pr-comment.md`, a Markdown body to post with `gh pr comment --body-file`.

For a template whose findings have file and line fields (as SARIF needs). The body is a summary line (the
findings by severity, the items reviewed and failed), then one table of findings, most severe first, each
with a `path#Lstart-Lend` link. In GitHub Actions (`GITHUB_SERVER_URL`, `GITHUB_REPOSITORY` and `GITHUB_SHA`
set) the links are absolute blob links at that commit; elsewhere they are relative to the repository root.
Findings that failed the line checks and items without a valid answer are counted, not tabled. At most
MAX_ROWS findings are listed, and no more than fit in BODY_BUDGET characters (a PR comment holds at most
65,536); the rest are counted. Memory holds at most a few times MAX_ROWS rows, however many findings.

Every cell comes from the model and is escaped (`batchpilot.results.exports.md_cell`), except inside the
message's code spans, where Markdown shows text literally (an escape there would show as `&lt;`), so only
the table's pipes and line breaks are replaced. The link text escapes Markdown punctuation (`__init__.py`
must not turn bold), and the link's URL percent-encodes the path (a `#` in a file name is not the anchor).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
import re
from urllib.parse import quote

from batchpilot.core.files import atomic_stream, iter_jsonl
from batchpilot.results.exports import md_cell
from batchpilot.results.lines import located
from batchpilot.results.sarif import require_line_findings

MAX_ROWS = 100
MAX_CELL = 300
BODY_BUDGET = 60_000  # characters; a comment holds at most 65,536, and the lines around the table need room
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def link_base() -> str:
    """`https://github.com/OWNER/REPO/blob/SHA/` inside GitHub Actions, else "" (links relative to the root)."""
    server, repo, sha = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA"))
    return f"{server.rstrip('/')}/{repo}/blob/{sha}/" if server and repo and sha else ""


def anchor(path: str, start: int, end: int) -> str:
    """`path#L3-L5` (or `#L3` for one line)."""
    lines = f"L{start}" if start == end else f"L{start}-L{end}"
    return f"{path}#{lines}"


LABEL_MARKS = set("\\`*_[]<>&~|")
CODE_SPAN_RE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def message_cell(text: str) -> str:
    """A model's message as one table cell: prose escaped, code spans kept literal (their `|` escaped)."""
    out, pos = [], 0
    for match in CODE_SPAN_RE.finditer(text):
        code = re.sub(r"\r\n|\r|\n", " ", match.group(2)).replace("|", "\\|")
        out += [md_cell(text[pos:match.start()]), match.group(1) + code + match.group(1)]
        pos = match.end()
    return "".join(out + [md_cell(text[pos:])])


def link_text(text: str) -> str:
    """Plain text for a link label: the marks Markdown acts on inside a label backslash-escaped (emphasis,
    code, brackets, HTML, entities, the table's pipe), control characters as spaces."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    return "".join("\\" + ch if ch in LABEL_MARKS else ch for ch in text)


def link_url(base: str, path: str, start: int, end: int) -> str:
    """The link target: the path percent-encoded (`#`, spaces and brackets included), then the line anchor."""
    return base + quote(path, safe="/-._~") + "#" + anchor("", start, end)[1:]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def write_github(merged_path: Path, target: Path, schema: dict) -> int:
    """merged.jsonl → pr-comment.md; returns the number of findings tabled."""
    findings = require_line_findings(schema, "github")
    rows: list[tuple[int, str, list[str]]] = []
    severities: Counter = Counter()
    items = failed = flagged = files_with = tabled = 0
    base = link_base()
    for merged in iter_jsonl(merged_path):
        items += 1
        if merged.get("status") != "ok":
            failed += 1
            continue
        bad = {p["finding"] for p in merged.get("finding_problems") or []}
        path = str(merged.get("path") or merged.get("source") or "")
        entries = [e for e in (merged.get("output") or {}).get(findings) or []]
        kept = 0
        for n, finding in enumerate(entries):
            if not isinstance(finding, dict):
                continue
            if n in bad or merged.get("finding_problems") is None or not located(finding):
                flagged += n in bad or merged.get("finding_problems") is not None
                continue
            kept += 1
            severity = str(finding.get("severity") or "")
            severities[severity] += 1
            where = anchor(path, finding["line_start"], finding["line_end"])
            link = f"[{link_text(where)}]({link_url(base, path, finding['line_start'], finding['line_end'])})"
            rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
            rows.append((rank, where, [md_cell(severity), link, md_cell(finding.get("category")),
                                       message_cell(_clip(str(finding.get("message") or "")))]))
            tabled += 1
            if len(rows) > 4 * MAX_ROWS:  # memory stays bounded: only the most severe rows can be shown
                rows = sorted(rows, key=lambda r: (r[0], r[1]))[:MAX_ROWS]
        files_with += kept > 0
    rows.sort(key=lambda r: (r[0], r[1]))
    by_severity = ", ".join(f"{severities[s]} {s}" for s in [*SEVERITY_ORDER, *sorted(set(severities) - set(SEVERITY_ORDER))]
                            if severities[s])
    total = sum(severities.values())
    lines = [f"**batchpilot review**: {total} finding(s) in {files_with} of {items} file(s)"
             + (f" ({by_severity})" if by_severity else "") + "."]
    if failed:
        lines.append(f"{failed} file(s) got no valid review; see the run's report.")
    if flagged:
        lines.append(f"{flagged} finding(s) pointed outside their file and are left out; see merged.jsonl.")
    shown = 0
    if rows:
        lines += ["", "| severity | where | category | finding |", "|---|---|---|---|"]
        used = sum(len(line) + 1 for line in lines)
        for _, _, cells in rows[:MAX_ROWS]:
            row = "| " + " | ".join(cells) + " |"
            if used + len(row) + 1 > BODY_BUDGET:  # long paths or escaped text: stop before GitHub refuses it
                break
            lines.append(row)
            used += len(row) + 1
            shown += 1
        if tabled > shown:
            lines.append(f"\n{tabled - shown} more finding(s) in the run's report.")
    with atomic_stream(target) as fh:
        fh.write("\n".join(lines) + "\n")
    return shown
