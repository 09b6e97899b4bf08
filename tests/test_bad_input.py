"""Bad input to `plan` and `prepare`: a clear Error:/Hint:, exit 1 (2 for usage), no traceback, no half run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from batchpilot.prepare.templates import TEMPLATES_DIR


def bad_template(edit):
    """A copy of code-review with one file edited by `edit(dir)`; returns its path."""
    target = Path("tpl")
    shutil.copytree(TEMPLATES_DIR / "code-review", target)
    edit(target)
    return str(target)


def set_meta(**changes):
    def edit(d: Path):
        meta = json.loads((d / "template.json").read_text())
        meta.update(changes)
        (d / "template.json").write_text(json.dumps(meta))
    return edit


def write(name, data):
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    (Path(name).write_bytes if isinstance(data, bytes) else Path(name).write_text)(data)
    return name


def ok_file():
    return write("src/ok.py", "x = 1\n")


# Each case: (id, setup returning extra args for prepare, expected exit code, text expected in the Error line)
CASES = [
    ("empty-glob", lambda: ["-t", "code-review", "-i", "src/**/*.nothing"], 1, "no files match"),
    ("missing-source", lambda: ["-t", "code-review", "-i", "does/not/exist.txt"], 1, "does not exist"),
    ("unreadable-file", lambda: (os.symlink("gone", "link.py"), ["-t", "code-review", "-i", "*.py"])[1], 1, "1 unreadable"),
    ("binary-file", lambda: ["-t", "code-review", "-i", write("blob.py", b"\x00\xff\x00")], 1, "1 binary"),
    ("duplicate-ids-jsonl", lambda: ["-t", "code-review", "-i", write("d.jsonl", '{"id":"a","text":"x"}\n{"id":"a","text":"y"}\n')], 1, "duplicate id 'a'"),
    ("id-longer-than-64", lambda: ["-t", "code-review", "-i", write("l.jsonl", json.dumps({"custom_id": "k" * 65, "text": "x"}) + "\n")], 1, "longer than 64"),
    ("custom-id-bad-chars", lambda: ["-t", "code-review", "-i", write("c.jsonl", '{"custom_id":"a b","text":"x"}\n')], 1, "'a b'"),
    ("invalid-jsonl-line", lambda: ["-t", "code-review", "-i", write("bad.jsonl", '{"text":"ok"}\n{"text": nope}\n')], 1, "line 2: invalid JSON"),
    ("jsonl-line-not-object", lambda: ["-t", "code-review", "-i", write("arr.jsonl", '[1, 2]\n')], 1, "expected a JSON object"),
    ("jsonl-not-utf8", lambda: ["-t", "code-review", "-i", write("enc.jsonl", '{"text":"caf\xe9"}\n'.encode("latin-1"))], 1, "not UTF-8"),
    ("csv-without-header", lambda: ["-t", "code-review", "-i", write("n.csv", "1,2,3\n4,5,6\n")], 1, "looks like data"),
    ("csv-empty-header-cell", lambda: ["-t", "code-review", "-i", write("h.csv", "id,,text\n1,2,3\n")], 1, "empty column name"),
    ("csv-ragged-row", lambda: ["-t", "code-review", "-i", write("r.csv", "id,text\n1,a,extra\n")], 1, "3 fields"),
    ("unknown-template", lambda: ["-t", "no-such-template", "-i", ok_file()], 1, "unknown template 'no-such-template'"),
    ("not-a-template-dir", lambda: (Path("empty").mkdir(), ["-t", "./empty", "-i", ok_file()])[1], 1, "not a template directory"),
    ("bad-placeholder", lambda: ["-t", bad_template(lambda d: (d / "user.md").write_text("Look at {{item.content}} and {{ itme.path }}\n")), "-i", ok_file()], 1, "user.md line 1 column 30"),
    ("item-placeholder-in-system", lambda: ["-t", bad_template(lambda d: (d / "system.md").write_text("Review {{item.path}}\n")), "-i", ok_file()], 1, "system.md line 1"),
    ("undeclared-variable", lambda: ["-t", bad_template(lambda d: (d / "user.md").write_text("{{var.language}} {{item.content}}\n")), "-i", ok_file()], 1, "{{var.language}} is not declared"),
    ("invalid-schema", lambda: ["-t", bad_template(lambda d: (d / "schema.json").write_text('{"type": "object", "properties": {"a": {"type": "strin"}}}')), "-i", ok_file()], 1, "invalid JSON Schema at /properties/a/type"),
    ("schema-not-json", lambda: ["-t", bad_template(lambda d: (d / "schema.json").write_text('{"type": "object",')), "-i", ok_file()], 1, "not valid JSON"),
    ("schema-not-object-type", lambda: ["-t", bad_template(lambda d: (d / "schema.json").write_text('{"type": "array"}')), "-i", ok_file()], 1, "top-level schema"),
    ("template-json-broken", lambda: ["-t", bad_template(lambda d: (d / "template.json").write_text("{name: 1}")), "-i", ok_file()], 1, "template.json"),
    ("bad-output-style", lambda: ["-t", bad_template(set_meta(output_style="xml")), "-i", ok_file()], 1, "output_style 'xml'"),
    ("required-variable-missing", lambda: ["-t", bad_template(set_meta(variables={"focus": {"default": "bugs"}, "labels": {"description": "labels to choose from", "example": "bug,feature"}})), "-i", ok_file()], 1, "needs the variable 'labels'"),
    ("unknown-variable-given", lambda: ["-t", "code-review", "-i", ok_file(), "--var", "colour=blue"], 1, "no variable 'colour'"),
    ("malformed-var", lambda: ["-t", "code-review", "-i", ok_file(), "--var", "novalue"], 1, "not NAME=VALUE"),
    ("unknown-model", lambda: ["-t", "code-review", "-i", ok_file(), "-m", "claude-imaginary-9"], 1, "unknown model 'claude-imaginary-9'"),
    ("empty-model", lambda: ["-t", "code-review", "-i", ok_file(), "-m", " "], 1, "--model is empty"),
    ("price-in-alone", lambda: ["-t", "code-review", "-i", ok_file(), "-m", "x", "--price-in", "1"], 1, "go together"),
    ("max-tokens-above-model-limit", lambda: ["-t", "code-review", "-i", ok_file(), "-m", "claude-haiku-4-5", "--max-tokens", "100000"], 1, "above 64000"),
    ("negative-max-tokens", lambda: ["-t", "code-review", "-i", ok_file(), "--max-tokens", "-5"], 2, "-5"),
    ("missing-template-option", lambda: ["-i", ok_file()], 2, "--template"),
    ("unknown-option", lambda: ["-t", "code-review", "-i", ok_file(), "--colour"], 2, "--colour"),
    ("bad-mode", lambda: ["-t", "code-review", "-i", ok_file(), "--mode", "turbo"], 2, "turbo"),
]


@pytest.mark.parametrize("case_id,setup,code,needle", CASES, ids=[c[0] for c in CASES])
def test_prepare_bad_input(bp, case_id, setup, code, needle):
    args = setup()
    r = bp("prepare", "--run", "run", *args)
    assert r.code == code, (r.stdout, r.stderr)
    error_lines = [l for l in r.stderr.splitlines() if l.startswith("Error: ")]
    assert len(error_lines) == 1, r.stderr
    assert needle in error_lines[0], r.stderr
    assert any(l.startswith("Hint: ") and len(l) > 10 for l in r.stderr.splitlines()), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not Path("run").exists()
    assert not [p for p in Path(".").iterdir() if p.name.startswith(".run.partial")]


@pytest.mark.parametrize("case_id,setup,code,needle", [c for c in CASES if c[0] not in ("bad-mode",)], ids=[c[0] for c in CASES if c[0] != "bad-mode"])
def test_plan_bad_input(bp, case_id, setup, code, needle):
    args = setup()
    r = bp("plan", *args)
    if case_id in ("unknown-model",):
        assert r.code == 0 and r.receipt["modes"]["direct"]["cost_usd"] is None  # plan reports, spending refuses
        return
    assert r.code == code, (r.stdout, r.stderr)
    assert "Error: " in r.stderr and "Hint: " in r.stderr and "Traceback" not in r.stderr
    assert needle in r.stderr, r.stderr


def test_existing_directory_that_is_not_a_run_is_left_alone(bp):
    Path("run").mkdir()
    Path("run/notes.txt").write_text("mine")
    r = bp("prepare", "--run", "run", "-t", "code-review", "-i", ok_file())
    assert r.code == 1 and "not a batchpilot run" in r.stderr and "Hint:" in r.stderr
    assert sorted(p.name for p in Path("run").iterdir()) == ["notes.txt"]


def test_interrupted_prepare_leaves_no_run_directory(bp, monkeypatch):
    """A failure after items were written (an item with a missing field, late in the list) removes the temp dir."""
    tpl = bad_template(lambda d: (d / "user.md").write_text("{{item.content}} by {{item.author}}\n"))
    write("t.jsonl", '{"id":"1","text":"a","author":"x"}\n{"id":"2","text":"b"}\n')
    r = bp("prepare", "--run", "run", "-t", tpl, "-i", "t.jsonl")
    assert r.code == 1 and "no field 'author'" in r.stderr
    assert not Path("run").exists()
    assert not [p for p in Path(".").iterdir() if ".partial" in p.name]
