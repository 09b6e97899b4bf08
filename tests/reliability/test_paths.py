"""Item ids and file names built to escape the run directory never write outside it.

Counts: 2 tests, 9 hostile JSONL ids (`../`, absolute, NUL, 300 characters, Unicode look-alikes `．．／`,
a newline, a backslash path, `..`, a dot-file) and 4 hostile file names (newline, look-alike slashes, a
250-byte name, a leading `..`), carried through prepare, fanout and collect (prompts/, outputs/, plus a
planted symlink in outputs/), merge and report, and batch mode with a retry round (rounds/, batches/).
After every step, nothing under the test's directory changed outside the run directory and the inputs,
every custom_id matches `^[A-Za-z0-9_-]{1,64}$`, and every file in the run is a regular file inside it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from reliability.harness import FAST, tree_hashes, write_tiny_template

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HOSTILE_IDS = ["../../escape", "/etc/passwd", "a\u0000b", "x" * 300, "．．／．．／evil", "line\nbreak",
               "..\\..\\win", "..", ".hidden"]
HOSTILE_NAMES = ["new\nline.py", "．．／look.py", "n" * 247 + ".py", "dots....py"]


def outside(root: Path, run: Path) -> dict[str, str]:
    return {k: v for k, v in tree_hashes(root).items() if not (root / k).is_relative_to(run)}


def check_run(run: Path) -> None:
    for line in (run / "items.jsonl").read_text().splitlines():
        assert ID_RE.fullmatch(json.loads(line)["custom_id"]), line
    for path in run.rglob("*"):
        if path.name == "planted.json":
            continue  # the test's own symlink
        assert not path.is_symlink() and path.resolve().is_relative_to(run.resolve()), path


def test_hostile_ids_and_names_through_agents_merge_report(bp, tmp_path):
    root = tmp_path
    with open(root / "items.jsonl", "w", encoding="utf-8") as fh:
        for i, cid in enumerate(HOSTILE_IDS):
            fh.write(json.dumps({"id": cid, "content": f"item {i}"}) + "\n")
    src = root / "src"
    src.mkdir()
    for name in HOSTILE_NAMES:
        (src / name).write_text("x = 1\n")
    tpl = write_tiny_template(root)
    (root / "secret.txt").write_text("outside\n")
    for items, run in (("items.jsonl", root / "work" / "job"), ("src", root / "work" / "files")):
        before = outside(root, run)
        r = bp("prepare", "-t", tpl, "-i", items, "--mode", "agents", "--run", run)
        assert r.code == 0, r.stderr
        assert r.receipt["items"] == (len(HOSTILE_IDS) if items == "items.jsonl" else len(HOSTILE_NAMES))
        check_run(run)
        assert bp("fanout", run).code == 0
        os.symlink(root / "secret.txt", run / "outputs" / "planted.json")
        for line in (run / "items.jsonl").read_text().splitlines():
            cid = json.loads(line)["custom_id"]
            (run / "outputs" / f"{cid}.json").write_text(json.dumps({"label": cid}))
        r = bp("collect", run)
        assert r.code == 0, r.stderr
        assert r.receipt["counts"]["succeeded"] == r.receipt["items"]
        assert bp("merge", run, "-f", "csv", "-f", "md").code == 0
        assert bp("report", run).code == 0
        check_run(run)
        assert outside(root, run) == before, f"{items}: files outside the run directory changed"
        assert (root / "secret.txt").read_text() == "outside\n"


def test_hostile_ids_through_batch_retry_rounds(bp, emulator, monkeypatch, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = emulator(faults=[FaultRule("expired", 0.5)])
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    root = tmp_path
    with open(root / "items.jsonl", "w", encoding="utf-8") as fh:
        for i, cid in enumerate(HOSTILE_IDS):
            fh.write(json.dumps({"id": cid, "content": f"item {i}"}) + "\n")
    tpl = write_tiny_template(root)
    run = root / "work" / "job"
    before = outside(root, run)
    r = bp("run", "-t", tpl, "-i", "items.jsonl", "--mode", "batch", "--run", run, "--max-rounds", "3")
    assert r.code == 0, r.stderr
    assert (run / "rounds").is_dir() and list((run / "rounds").iterdir()), "the job should need a retry round"
    check_run(run)
    assert outside(root, run) == before
