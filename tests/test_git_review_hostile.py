"""Reviewing a change made hostile: file names and contents that try to confuse the diff parser, symlinks that
point out of the repository, and model answers that try to break the SARIF and GitHub exports.

Each test builds its own repository in a temporary directory with the `git` on PATH and runs the CLI from
inside it as a user would (from a subdirectory where that matters).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool

SECRET = "AKIA-not-a-real-key-but-private"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def hostile(tmp_path, monkeypatch) -> Path:
    """A repository whose last commit holds every awkward change this test file attacks with."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / "private.txt").write_text(SECRET + "\n")
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "a.py").write_text("a\nb\nc\n")
    (root / "kind.txt").write_text("one\ntwo\n")
    (root / "sp ace.py").write_text("x\n")
    (root / "pkg" / "__init__.py").write_text("x = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    # A lone CR inside a line: split there, it would pose as the header of another file's diff.
    (root / "a.py").write_bytes(b"a\nB\rdiff --git a/zz b/zz\r+forged\nc\n")
    (root / "kind.txt").unlink()
    (root / "kind.txt").symlink_to(tmp_path / "private.txt")  # a file that became a symlink: a type change
    (root / "leak.py").symlink_to(tmp_path / "private.txt")  # a new symlink out of the repository
    (root / "sp ace.py").write_text("x\ny\n")
    (root / "pkg" / "__init__.py").write_text("x = 1\ny = 2\n")
    (root / 'q"uote.py').write_text("q = 1\n")
    (root / "we#ird [x].py").write_text("w = 1\n")
    (root / "zz.py").write_text("z = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "two")
    monkeypatch.chdir(root)
    return root


def test_lone_carriage_returns_type_changes_and_symlinks_do_not_confuse_the_change(bp, hostile):
    r = bp("plan", "-t", "code-review", "-i", "git:HEAD~1")
    assert r.code == 0, r.stderr
    listed = {c["path"]: (c["changed_lines"], c["hunks"]) for c in r.receipt["changes"]["listed"]}
    assert listed == {
        "a.py": ("2", ["@@ -1,3 +1,3 @@"]),
        "pkg/__init__.py": ("2", ["@@ -1 +1,2 @@"]),
        'q"uote.py': ("1", ["@@ -0,0 +1 @@"]),
        "sp ace.py": ("2", ["@@ -1 +1,2 @@"]),
        "we#ird [x].py": ("1", ["@@ -0,0 +1 @@"]),
        "zz.py": ("1", ["@@ -0,0 +1 @@"]),
    }
    prepared = bp("prepare", "-t", "code-review", "-i", "git:HEAD~1", "--run", "job")
    assert prepared.code == 0, prepared.stderr
    skipped = [json.loads(line) for line in (hostile / "job" / "skipped.jsonl").read_text().splitlines()]
    assert sorted((s["source"], s["reason"]) for s in skipped) == [("kind.txt", "symlink"), ("leak.py", "symlink")]
    assert SECRET not in (hostile / "job" / "requests.jsonl").read_text()  # nothing outside the repository is sent


def test_git_settings_that_reshape_the_patch_do_not_move_the_lines(bp, hostile, tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    git(inner, "init", "-q")
    git(inner, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-q", "--allow-empty", "-m", "i")
    git(hostile, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "sub")
    (hostile / "blank.py").write_text("a\n\nb\n\nc\nd\n")
    git(hostile, "add", "-A")
    git(hostile, "commit", "-qm", "three")
    git(inner, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-q", "--allow-empty", "-m", "j")
    git(hostile / "sub", "pull", "-q", "origin", "HEAD")
    (hostile / "blank.py").write_text("a\n\nb\n\nc\nD\n")
    git(hostile, "add", "-A")
    git(hostile, "commit", "-qm", "four")
    git(hostile, "config", "diff.suppressBlankEmpty", "true")  # blank context lines lose their leading space
    git(hostile, "config", "diff.submodule", "log")  # a submodule shown as a log, without a diff header
    r = bp("plan", "-t", "code-review", "-i", "git:HEAD~1")
    assert r.code == 0, r.stderr
    assert [(c["path"], c["changed_lines"]) for c in r.receipt["changes"]["listed"]] == [("blank.py", "6")]
    assert r.receipt["skipped"] == {"submodule": 1}


def test_a_file_with_a_merge_conflict_is_skipped_and_the_others_keep_their_own_diff(bp, hostile):
    git(hostile, "checkout", "-qb", "feature")
    (hostile / "zz.py").write_text("z = 'feature'\n")
    git(hostile, "commit", "-qam", "feature")
    git(hostile, "checkout", "-q", "main")
    (hostile / "zz.py").write_text("z = 'main'\n")
    git(hostile, "commit", "-qam", "main")
    subprocess.run(["git", "merge", "feature"], cwd=hostile, capture_output=True)  # conflicts in zz.py
    (hostile / "new.py").write_text("n = 1\n")
    git(hostile, "add", "new.py")
    r = bp("plan", "-t", "code-review", "-i", "git:staged")
    assert r.code == 0, r.stderr
    assert [(c["path"], c["hunks"]) for c in r.receipt["changes"]["listed"]] == [("new.py", ["@@ -0,0 +1 @@"])]
    assert r.receipt["skipped"] == {"unmerged": 1}


def test_a_diff_longer_than_the_item_limit_is_skipped_not_sent(bp, hostile):
    (hostile / "big.py").write_text("".join(f"line {n}\n" for n in range(3000)))
    git(hostile, "add", "big.py")
    git(hostile, "commit", "-qm", "big")
    (hostile / "big.py").write_text("small\n")  # the new side is tiny, its diff is not
    (hostile / "zz.py").write_text("z = 2\n")
    r = bp("prepare", "-t", "code-review", "-i", "git:HEAD", "--max-item-bytes", "2000", "--run", "job")
    assert r.code == 0, r.stderr
    skipped = [json.loads(line) for line in (hostile / "job" / "skipped.jsonl").read_text().splitlines()]
    assert skipped == [{"source": "big.py", "reason": "oversized", "detail": "its diff is longer than 2000 bytes"}]
    requests = (hostile / "job" / "requests.jsonl").read_text()
    assert "zz.py" in requests and "line 2999" not in requests


def test_sarif_and_comment_from_a_subdirectory_with_awkward_paths(bp, hostile, monkeypatch):
    validator = require_tool("sarif-multitool")
    monkeypatch.chdir(hostile / "pkg")
    r = bp("run", "-t", "code-review", "-i", "git:HEAD~1", "--emulate", "--mode", "batch", "--format", "sarif",
           "--format", "github", "--run", "one")
    assert r.code == 0, r.stderr
    run = hostile / "pkg" / "one"
    merged = [json.loads(line) for line in (run / "merged.jsonl").read_text().splitlines()]
    assert all(m["finding_problems"] == [] for m in merged), [m["finding_problems"] for m in merged]
    checked = subprocess.run([validator, "validate", str(run / "merged.sarif"), "--output", str(run / "v.sarif")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [v for v in json.loads((run / "v.sarif").read_text())["runs"][0].get("results") or [] if v.get("level") == "error"] == []
    uris = {x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for x in json.loads((run / "merged.sarif").read_text())["runs"][0]["results"]}
    assert uris == {"a.py", "pkg/__init__.py", "q%22uote.py", "sp%20ace.py", "we%23ird%20%5Bx%5D.py", "zz.py"}  # root-relative, RFC 3986
    comment = (run / "pr-comment.md").read_text()
    assert "[pkg/\\_\\_init\\_\\_.py#L2](pkg/__init__.py#L2)" in comment  # not "pkg/**init**.py"
    assert "[we#ird \\[x\\].py#L1](we%23ird%20%5Bx%5D.py#L1)" in comment  # the file's `#` is not the anchor


def test_hostile_answers_render_safely_and_never_break_the_exports(bp, hostile, emulator, monkeypatch, tmp_path):
    from batchpilot.emulator.behaviour.scenario import Step

    validator = require_tool("sarif-multitool")
    template = tmp_path / "lenient"
    shutil.copytree(Path(__file__).resolve().parents[1] / "skills" / "batch-processing" / "templates" / "code-review", template)
    schema = json.loads((template / "schema.json").read_text())
    schema["properties"]["findings"]["items"]["required"] = ["severity", "category", "message"]  # lines optional
    del schema["properties"]["findings"]["items"]["properties"]["category"]["enum"]  # categories in free text
    (template / "schema.json").write_text(json.dumps(schema))
    base = {"severity": "high", "category": "bug", "suggestion": "", "confidence": "high"}
    answer = {"summary": "s", "findings": [
        {**base, "file": "zz.py", "line_start": 1, "line_end": 1, "severity": "critical",
         "message": "Use `a < b || c` here, not <b>bold</b> | <!-- hidden --> and \\ slash."},
        {**base, "file": "zz.py", "line_start": 0, "line_end": 1, "message": "line zero"},
        {**base, "file": "zz.py", "line_start": -2, "line_end": 1, "message": "negative"},
        {**base, "file": "zz.py", "line_start": 1, "line_end": 0, "message": "end before start"},
        {**base, "file": "zz.py", "line_start": 1, "line_end": 2, "message": "one past the last line"},
        {**base, "file": "zz.py", "message": "no lines at all"},
        {**base, "message": "no file and no lines"}]}
    many = {"summary": "s", "findings": [{**base, "file": "a.py", "line_start": 2, "line_end": 2,
                                          "message": f"{n} " + "&<" * 200} for n in range(150)]}
    emu = emulator(scenario=[Step(when={"contains": "Review the change to this file: zz.py"}, reply={"text": json.dumps(answer)}),
                             Step(when={"contains": "Review the change to this file: a.py"}, reply={"text": json.dumps(many)})])
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    r = bp("run", "-t", str(template), "-i", "git:HEAD~1", "--mode", "direct", "--format", "sarif", "--format",
           "github", "--max-tokens", "64000", "--run", "job")
    assert r.code == 0, r.stderr
    merged = {m["path"]: m for m in map(json.loads, (hostile / "job" / "merged.jsonl").read_text().splitlines())}
    problems = {p["finding"]: p["problem"] for p in merged["zz.py"]["finding_problems"]}
    assert problems == {1: "line_start 0 is before the first line", 2: "line_start -2 is before the first line",
                        3: "line_end 0 is before line_start 1", 4: "line_end 2 is past the end of zz.py (1 lines)",
                        5: "line_start and line_end must be integers", 6: "file None is not the reviewed file 'zz.py'"}
    checked = subprocess.run([validator, "validate", "job/merged.sarif", "--output", "v.sarif"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [v for v in json.loads(Path("v.sarif").read_text())["runs"][0].get("results") or [] if v.get("level") == "error"] == []
    log = json.loads((hostile / "job" / "merged.sarif").read_text())["runs"][0]
    rule_ids = [rule["id"] for rule in log["tool"]["driver"]["rules"]]
    assert all(rule_ids[x["ruleIndex"]] == x["ruleId"] for x in log["results"]) and "code-review/bug" in rule_ids
    results = [x for x in log["results"] if x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "zz.py"]
    assert [x["locations"][0]["physicalLocation"]["region"] for x in results] == [{"startLine": 1, "endLine": 1}]
    comment = (hostile / "job" / "pr-comment.md").read_text()
    [row] = [line for line in comment.splitlines() if "zz.py#L1" in line]
    # Code spans are literal in Markdown: their text stays as written (pipes escaped for the table); prose is escaped.
    assert "`a < b \\|\\| c`" in row and "&lt;b&gt;bold&lt;/b&gt; \\| &lt;!-- hidden --&gt;" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 6  # four cells between the outer pipes: no pipe leaks out
    assert "6 finding(s) pointed outside their file" in comment
    # 151 findings whose escaped text is long: the body stays under GitHub's 65,536 characters, the rest counted.
    total = int(re.match(r"\*\*batchpilot review\*\*: (\d+) finding", comment).group(1))
    shown = sum(1 for line in comment.splitlines() if line.startswith("| ")) - 1  # less the header row
    more = int(re.search(r"\n(\d+) more finding\(s\) in the run's report", comment).group(1))
    assert len(comment) <= 65536 and 0 < shown < 100 and shown + more == total > 150
    assert os.path.exists(hostile / "job" / "report.md")


def test_a_shallow_clone_says_to_fetch_the_history(bp, hostile, tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{hostile}", str(clone)], check=True, capture_output=True)
    monkeypatch.chdir(clone)
    r = bp("plan", "-t", "code-review", "-i", "git:HEAD~1")
    assert r.code == 1 and "'HEAD~1' is not a commit in this repository (a shallow clone)" in r.stderr
    assert "Hint: fetch the history first: `git fetch --unshallow`" in r.stderr and "Traceback" not in r.stderr


def test_run_refuses_an_export_the_schema_cannot_give_before_it_spends(bp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("items.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    r = bp("run", "-t", "classify", "-i", "items.jsonl", "--var", "labels=x,y", "--emulate", "--mode", "direct",
           "--format", "github", "--run", "c")
    assert r.code == 1 and "--format github needs findings with file, line_start and line_end" in r.stderr
    assert not (tmp_path / "c").exists()  # nothing prepared, nothing sent


def test_plain_file_items_from_a_subdirectory_point_from_the_repository_root(bp, hostile, monkeypatch):
    monkeypatch.chdir(hostile / "pkg")
    r = bp("run", "-t", "code-review", "-i", "*.py", "--emulate", "--mode", "direct", "--format", "sarif",
           "--format", "github", "--run", "files")
    assert r.code == 0, r.stderr
    log = json.loads((hostile / "pkg" / "files" / "merged.sarif").read_text())["runs"][0]
    assert {x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for x in log["results"]} == {"pkg/__init__.py"}
    assert "](pkg/__init__.py#L" in (hostile / "pkg" / "files" / "pr-comment.md").read_text()
