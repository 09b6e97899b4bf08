"""SARIF 2.1.0: merged.jsonl → `merged.sarif`, for GitHub code scanning, the VS Code SARIF viewer and CI gates.

Written for a template whose schema has findings with `file`, `line_start` and `line_end` (code-review,
security-review); `merge --format sarif` on another template is an error. The log holds one run:

* `tool.driver`: name `batchpilot`, its version, and one rule per category (`<template>/<category>`) with the
  category's description from the schema (the `category` field's enum when it has one, else the categories
  seen); a schema without `category` gets one rule, `<template>/finding`;
* one result per finding that passed the line checks (`batchpilot.results.lines`): `ruleId`, `level` from
  `severity` (critical/high → error, medium → warning, low/info → note), the message (and the suggested fix),
  one physical location whose region is `line_start`-`line_end`, and `partialFingerprints`;
* `invocations[0].toolExecutionNotifications`: items that did not give a valid answer (level error) and
  findings that failed the line checks (level warning), never as results.

Paths: an item's path as recorded (for `--items git:...` it is relative to the repository root, which is
what code scanning wants), with `uriBaseId` `%SRCROOT%`; an absolute path becomes a `file:` URI.

`partialFingerprints["batchpilotFinding/v1"]` hashes the rule, the path, the normalised message and the
finding's ordinal among identical ones, not the line numbers, so the same finding re-reported after an edit
above it, or by a re-run, matches the same alert. GitHub's code scanning documents fingerprints as the way
it avoids duplicate alerts across uploads:
https://docs.github.com/en/code-security/reference/code-scanning/sarif-files/sarif-support-for-code-scanning
The format: https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import atomic_stream, iter_jsonl
from batchpilot.results.exports import findings_field
from batchpilot.results.lines import has_line_fields, located
from batchpilot.version import __version__

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "batchpilotFinding/v1"


def require_line_findings(schema: dict, fmt: str) -> str:
    """The findings field of a schema a SARIF or GitHub export can use, or an Error/Hint naming the format."""
    findings = findings_field(schema)
    if not has_line_fields(schema, findings):
        raise BatchpilotError(f"--format {fmt} needs findings with file, line_start and line_end, and this run's schema has none",
                              "use it with code-review or security-review (or a schema with those finding fields); "
                              "other runs export as csv or md")
    return findings  # type: ignore[return-value]


def artifact_uri(path: str) -> dict:
    """An artifactLocation: relative paths against %SRCROOT% (percent-encoded), absolute ones as file: URIs."""
    posix = path.replace("\\", "/")
    while posix.startswith("./"):
        posix = posix[2:]
    if PurePosixPath(posix).is_absolute():
        return {"uri": Path(path).as_uri()}
    # A SARIF uri is an RFC 3986 URI reference: a space, `#`, `"`, `[` or non-ASCII letter in a file name is
    # percent-encoded, and so is `:` (in a relative reference's first segment it would read as a scheme).
    return {"uri": quote(posix, safe="/-._~!$&'()*+,;=@"), "uriBaseId": SRCROOT}


def fingerprint(rule: str, path: str, message: str, ordinal: int) -> str:
    text = re.sub(r"\s+", " ", message).strip().lower()
    return hashlib.sha256(f"{rule}\0{path}\0{text}\0{ordinal}".encode("utf-8")).hexdigest()


def _rules(schema: dict, findings: str, template: str) -> tuple[list[dict], dict[str, int]]:
    props = (((schema.get("properties") or {}).get(findings) or {}).get("items") or {}).get("properties") or {}
    category = props.get("category") if isinstance(props.get("category"), dict) else None
    names = [str(c) for c in category.get("enum", [])] if category else []
    about = str(category.get("description", "")) if category else ""
    rules = [_rule(template, n, about) for n in names] if category else [_rule(template, "finding", "")]
    return rules, {r["id"]: n for n, r in enumerate(rules)}


def _rule(template: str, name: str, about: str) -> dict:
    text = f"{template}: {name}"
    return {"id": f"{template}/{name}", "name": re.sub(r"[^A-Za-z0-9]+", " ", name).title().replace(" ", ""),
            "shortDescription": {"text": text},
            "fullDescription": {"text": f"{text}. {about}".strip() if about else f"{text}."},
            "defaultConfiguration": {"level": "warning"}}


def _message(finding: dict) -> str:
    text = str(finding.get("message") or "").strip() or "Finding."
    fix = str(finding.get("suggestion") or "").strip()
    return f"{text} Fix: {fix}" if fix else text


def write_sarif(merged_path: Path, target: Path, schema: dict) -> int:
    """merged.jsonl → merged.sarif (one run); returns the number of results."""
    findings = require_line_findings(schema, "sarif")
    template = _template_name(merged_path)
    rules, index = _rules(schema, findings, template)
    results: list[dict] = []
    notes: list[dict] = []
    seen: Counter = Counter()
    for merged in iter_jsonl(merged_path):
        path = merged.get("path") or merged.get("source") or ""
        if merged.get("status") != "ok":
            error = merged.get("error") or {}
            notes.append(_note("error", f"{merged.get('custom_id')}: {merged.get('status')}: "
                               f"{error.get('message') or 'no valid answer'}", path))
            continue
        bad = {p["finding"]: p["problem"] for p in merged.get("finding_problems") or []}
        for n, finding in enumerate((merged.get("output") or {}).get(findings) or []):
            if not isinstance(finding, dict):
                continue
            if n in bad:
                notes.append(_note("warning", f"{merged.get('custom_id')}: finding {n} not reported: {bad[n]}", path))
                continue
            if merged.get("finding_problems") is None:
                continue  # not a file item: nothing to point at
            if not located(finding):  # a schema that leaves the line fields optional
                notes.append(_note("warning", f"{merged.get('custom_id')}: finding {n} not reported: it names no file and lines", path))
                continue
            results.append(_result(finding, path, template, rules, index, seen))
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "batchpilot", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},
            "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notes}],
            "originalUriBaseIds": {SRCROOT: {"description": {"text": "The repository root (the directory the items' paths are relative to)."}}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }
    with atomic_stream(target) as fh:
        json.dump(log, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    return len(results)


def _result(finding: dict, path: str, template: str, rules: list[dict], index: dict[str, int], seen: Counter) -> dict:
    category = str(finding.get("category") or "finding")
    rule = f"{template}/{category}"
    if rule not in index:  # a category the schema does not enumerate: its rule is added as it is seen,
        index[rule] = len(rules)  # so that every ruleIndex points at a rule
        rules.append(_rule(template, category, ""))
    message = _message(finding)
    ordinal = seen[(rule, path, message)]
    seen[(rule, path, message)] += 1
    region = {"startLine": finding["line_start"], "endLine": finding["line_end"]}
    result = {
        "ruleId": rule,
        "ruleIndex": index[rule],
        "level": LEVELS.get(str(finding.get("severity")), "warning"),
        "message": {"text": message},
        "locations": [{"physicalLocation": {"artifactLocation": artifact_uri(path), "region": region}}],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(rule, path, message, ordinal)},
    }
    extra = {k: finding[k] for k in ("severity", "confidence", "cwe") if finding.get(k) is not None}
    if extra:
        result["properties"] = extra
    return result


def _note(level: str, text: str, path: str) -> dict:
    note: dict[str, Any] = {"level": level, "message": {"text": text}}
    if path:
        note["locations"] = [{"physicalLocation": {"artifactLocation": artifact_uri(path)}}]
    return note


def _template_name(merged_path: Path) -> str:
    """The run's template name from run.json next to merged.jsonl (`findings` when it cannot be read)."""
    try:
        manifest = json.loads(merged_path.with_name("run.json").read_text(encoding="utf-8"))
        name = (manifest.get("template") or {}).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name or "findings"))
