"""Reviewing a change: `--items git:...` items, the merger's line checks, and the SARIF and GitHub exports.

Each test builds a repository in its own temporary directory with the `git` on PATH (three commits: a
modified file, a deleted one, a rename with an edit, a new file and a changed binary), and runs the CLI from
inside it as a user would. merged.sarif is checked by Microsoft's validator (`sarif-multitool validate`,
installed by tests/run.py), and the changed lines are read back from `git diff -U0` here, independently of
batchpilot's own diff parser.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool

MOD_V1 = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n\n\ndef mean(xs):\n    return total(xs) / len(xs)\n"
MOD_V2 = MOD_V1.replace("    return total(xs) / len(xs)\n", "    if not xs:\n        return 0\n    return total(xs) / len(xs)\n")
NOTES_V1 = "".join(f"note {n}\n" for n in range(1, 13))
NOTES_V2 = NOTES_V1.replace("note 7\n", "note seven\n")
ADDED = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n"
PY_CHANGED = {"mod.py", "notes.txt", "tool.py"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A repository whose last two commits modify, delete, rename (with an edit), add, and change a binary."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no user git config leaks in
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "mod.py").write_text(MOD_V1)
    (root / "gone.py").write_text("x = 1\n")
    (root / "old_notes.txt").write_text(NOTES_V1)
    (root / "logo.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    (root / "mod.py").write_text(MOD_V2)
    git(root, "rm", "-q", "gone.py")
    git(root, "commit", "-qam", "two")
    git(root, "mv", "old_notes.txt", "notes.txt")
    (root / "notes.txt").write_text(NOTES_V2)
    (root / "tool.py").write_text(ADDED)
    (root / "logo.bin").write_bytes(b"\x89PNG\x00\x03\x04")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "three")
    # Settings that change git's diff output must not change what batchpilot reads.
    git(root, "config", "diff.noprefix", "true")
    git(root, "config", "diff.mnemonicPrefix", "true")
    git(root, "config", "color.ui", "always")
    monkeypatch.chdir(root)
    return root


def added_lines(repo: Path, rev: str) -> dict[str, set[int]]:
    """path → the new-side numbers of the lines `git diff -U0 REV` adds (read with git's own prefixes)."""
    out: dict[str, set[int]] = {}
    path = None
    for line in git(repo, "-c", "diff.noprefix=false", "diff", "-U0", "--no-color", "-M", "--src-prefix=a/", "--dst-prefix=b/", rev).splitlines():
        if line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else None
        m = re.match(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", line)
        if m and path:
            start, count = int(m.group(1)), int(m.group(2) or 1)
            out.setdefault(path, set()).update(range(start, start + count))
    return out


def test_plan_lists_exactly_the_changed_text_files_with_their_hunks(bp, repo):
    r = bp("plan", "-t", "code-review", "-i", "git:HEAD~2")
    assert r.code == 0, r.stderr
    changes = r.receipt["changes"]
    listed = {c["path"]: c for c in changes["listed"]}
    assert set(listed) == PY_CHANGED and r.receipt["items"] == 3
    assert listed["mod.py"]["status"] == "modified" and listed["mod.py"]["changed_lines"] == "9-10"
    assert listed["mod.py"]["hunks"] == ["@@ -6,4 +6,6 @@"]
    assert listed["notes.txt"]["status"] == "renamed" and listed["notes.txt"]["old_path"] == "old_notes.txt"
    assert listed["notes.txt"]["changed_lines"] == "7"
    assert listed["tool.py"]["status"] == "added" and listed["tool.py"]["changed_lines"] == "1-5"
    assert (changes["lines_added"], changes["lines_removed"]) == (8, 1)
    assert r.receipt["skipped"] == {"binary": 1, "deleted": 1}
    skipped = bp("prepare", "-t", "code-review", "-i", "git:HEAD~2", "--mode", "batch", "--run", "prep")
    assert skipped.code == 0, skipped.stderr
    lines = [json.loads(x) for x in (repo / "prep" / "skipped.jsonl").read_text().splitlines()]
    assert {(x["source"], x["reason"]) for x in lines} >= {("logo.bin", "binary"), ("gone.py", "deleted")}


def test_ranges_staged_and_the_diff_variant_of_the_prompt(bp, repo):
    r = bp("plan", "-t", "security-review", "-i", "git:HEAD~1..HEAD")
    assert r.code == 0, r.stderr
    assert {c["path"] for c in r.receipt["changes"]["listed"]} == {"notes.txt", "tool.py"}
    (repo / "mod.py").write_text(MOD_V2 + "\n\ndef first(xs):\n    return xs[0]\n")
    git(repo, "add", "mod.py")
    (repo / "mod.py").write_text(MOD_V2)  # the working tree differs again: staged reads the index
    staged = bp("prepare", "-t", "code-review", "-i", "git:staged", "--mode", "agents", "--run", "st")
    assert staged.code == 0, staged.stderr
    item = json.loads((repo / "st" / "items.jsonl").read_text())
    assert item["path"] == "mod.py" and item["kind"] == "diff" and item["lines"] == 15 and item["changed"] == [[12, 15]]
    message = json.loads((repo / "st" / "requests.jsonl").read_text())["params"]["messages"][0]["content"]
    assert "Review the change to this file: mod.py" in message and "<item_diff>\ndiff --git a/mod.py b/mod.py" in message
    assert "+def first(xs):" in message and "Review the changed lines: 12-15." in message
    wave = bp("run", "-t", "code-review", "-i", "git:HEAD~2", "--mode", "agents", "--run", "ag")
    assert wave.code == 0, wave.stderr
    prompt = (repo / "ag" / "prompts" / "mod-py.md").read_text()
    assert "<item_diff>" in prompt and "+    if not xs:" in prompt


def test_a_deletion_marks_the_line_above_it(bp, repo):
    (repo / "notes.txt").write_text(NOTES_V2.replace("note 3\nnote 4\n", ""))
    git(repo, "commit", "-qam", "four")
    r = bp("plan", "-t", "code-review", "-i", "git:HEAD~1")
    assert r.code == 0, r.stderr
    [entry] = r.receipt["changes"]["listed"]
    assert (entry["path"], entry["changed_lines"], entry["added"], entry["removed"]) == ("notes.txt", "2", 0, 2)


@pytest.mark.parametrize("spec, expected", [
    ("git:nope", "'nope' is not a commit in this repository"),
    ("git:HEAD~1..nope", "'nope' is not a commit in this repository"),
    ("git:--output=x", "'--output=x' is not a commit in this repository"),
    ("git:", "--items git: needs a revision"),
    ("git:HEAD", "--items git:HEAD: no file changed"),
])
def test_a_bad_revision_is_an_error_with_a_hint(bp, repo, spec, expected):
    r = bp("plan", "-t", "code-review", "-i", spec)
    assert r.code == 1 and expected in r.stderr and "\nHint: " in r.stderr and "Traceback" not in r.stderr
    assert not (repo / "x").exists()


def test_outside_a_repository_is_an_error_with_a_hint(bp, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    r = bp("plan", "-t", "code-review", "-i", "git:main")
    assert r.code == 1 and "is not inside a git repository" in r.stderr and "Hint: run batchpilot from inside" in r.stderr


def _results(run: Path) -> list[dict]:
    return json.loads((run / "merged.sarif").read_text())["runs"][0]["results"]


def test_run_emulated_writes_sarif_that_the_validator_accepts_on_changed_lines(bp, repo):
    validator = require_tool("sarif-multitool")
    r = bp("run", "-t", "code-review", "-i", "git:HEAD~2", "--emulate", "--mode", "batch", "--format", "sarif",
           "--format", "github", "--run", "one")
    assert r.code == 0, r.stderr
    assert r.receipt["counts"]["ok"] == 3
    checked = subprocess.run([validator, "validate", "one/merged.sarif", "--output", "validation.sarif"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verdict = json.loads(Path("validation.sarif").read_text())["runs"][0].get("results") or []
    errors = [v for v in verdict if v.get("level") == "error"]
    assert errors == [], errors
    results = _results(repo / "one")
    # at least one finding per file (the emulator's answer length varies with the item), all on the change
    assert len(results) >= 3 and {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == set(added_lines(repo, "HEAD~2"))
    changed = added_lines(repo, "HEAD~2")
    for result in results:
        location = result["locations"][0]["physicalLocation"]
        path, region = location["artifactLocation"]["uri"], location["region"]
        assert (repo / path).is_file()
        assert set(range(region["startLine"], region["endLine"] + 1)) <= changed[path], (path, region)
    log = json.loads((repo / "one" / "merged.sarif").read_text())["runs"][0]
    assert log["tool"]["driver"]["name"] == "batchpilot"
    assert {rule["id"] for rule in log["tool"]["driver"]["rules"]} >= {f"code-review/{r['ruleId'].split('/')[1]}" for r in results}
    comment = (repo / "one" / "pr-comment.md").read_text()
    assert comment.startswith(f"**batchpilot review**: {len(results)} finding(s) in 3 of 3 file(s)")
    assert re.search(r"\[tool\.py#L[1-5]\]\(tool\.py#L[1-5]\)", comment)
    again = bp("run", "-t", "code-review", "-i", "git:HEAD~2", "--emulate", "--mode", "batch", "--format", "sarif",
             "--format", "github", "--run", "two")
    assert again.code == 0, again.stderr
    prints = lambda run: sorted(x["partialFingerprints"]["batchpilotFinding/v1"] for x in _results(run))  # noqa: E731
    assert prints(repo / "one") == prints(repo / "two") and len(set(prints(repo / "one"))) == len(results)


def test_a_finding_outside_its_file_is_flagged_not_passed_on(bp, repo, emulator, monkeypatch):
    from batchpilot.emulator.behaviour.scenario import Step

    bad = {"summary": "one real, one invented", "findings": [
        {"file": "tool.py", "line_start": 5, "line_end": 5, "severity": "critical", "category": "security",
         "message": "shell=True with a caller's command.", "suggestion": "Pass a list, no shell.", "confidence": "high"},
        {"file": "tool.py", "line_start": 40, "line_end": 44, "severity": "high", "category": "bug",
         "message": "Invented lines.", "suggestion": "None.", "confidence": "low"}]}
    emu = emulator(scenario=[Step(when={"contains": "Review the change to this file: tool.py"}, reply={"text": json.dumps(bad)})])
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    r = bp("run", "-t", "code-review", "-i", "git:HEAD~2", "--mode", "direct", "--format", "sarif", "--format", "github", "--run", "job")
    assert r.code == 0, r.stderr
    merged = {m["custom_id"]: m for m in map(json.loads, (repo / "job" / "merged.jsonl").read_text().splitlines())}
    assert merged["tool-py"]["status"] == "ok"
    assert merged["tool-py"]["finding_problems"] == [{"finding": 1, "problem": "line_end 44 is past the end of tool.py (5 lines)"}]
    assert merged["mod-py"]["finding_problems"] == []
    report = (repo / "job" / "report.md").read_text()
    assert "## Findings that fail the line check: 1" in report and "line_end 44 is past the end of tool.py" in report
    tool_results = [x for x in _results(repo / "job") if x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "tool.py"]
    assert [x["locations"][0]["physicalLocation"]["region"] for x in tool_results] == [{"startLine": 5, "endLine": 5}]
    notes = json.loads((repo / "job" / "merged.sarif").read_text())["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["level"] for n in notes] == ["warning"] and "line_end 44" in notes[0]["message"]["text"]
    assert "1 finding(s) pointed outside their file" in (repo / "job" / "pr-comment.md").read_text()


def test_sarif_needs_findings_with_lines(bp, tmp_path):
    Path("items.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    r = bp("run", "-t", "classify", "-i", "items.jsonl", "--var", "labels=x,y", "--emulate", "--mode", "direct", "--run", "c")
    assert r.code == 0, r.stderr
    bad = bp("merge", "c", "--format", "sarif")
    assert bad.code == 1 and "--format sarif needs findings with file, line_start and line_end" in bad.stderr
    assert "Hint: use it with code-review or security-review" in bad.stderr and not (tmp_path / "c" / "merged.sarif").exists()


def test_the_format_words_of_the_cli_are_the_exporters():
    from batchpilot.cli.options import FORMATS
    from batchpilot.results.formats import FORMAT_WORDS

    assert FORMATS == FORMAT_WORDS
