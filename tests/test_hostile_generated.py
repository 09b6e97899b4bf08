"""Generated hostile input (hypothesis, derandomized: the same examples on every machine and run).

Random JSONL and CSV items, random ids, random template text and random damage to a run's files go
through the CLI in-process (click's CliRunner with exceptions not caught, so any traceback fails the
test). Every example must end with exit 0, or exit 1/2 with `Error:` + `Hint:`; damage that is refused
must leave the run directory byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SKILL_DIR, run_cli
from test_hostile import SRC, snapshot

CUSTOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def bounded(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check(r, allowed=(0, 1, 2)) -> None:
    """The CLI contract for any input: success, or a clean Error/Hint with exit 1 or 2."""
    assert "Traceback" not in r.stderr
    assert r.code in allowed, (r.code, r.stderr)
    if r.code:
        assert "Error: " in r.stderr and "Hint: " in r.stderr, r.stderr
    else:
        assert r.receipt is not None, r.stdout


class Scratch:
    """A fresh directory per example (hypothesis reuses the test's tmp dir across examples)."""

    def __enter__(self) -> Path:
        self.dir = tempfile.mkdtemp(dir=".")
        return Path(self.dir).resolve()

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hostile_lines = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["id", "custom_id", "text", "content", "body", "x"]), json_values, max_size=4)
    .map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"NaN", b'{"text": NaN}', b'{"text": Infinity}', b"[" * 3000, b'{"a":' * 3000,
                     b"1" * 5000, b'{"text": "\xff\xfe"}', b"\xef\xbb\xbf{\"text\": \"bom\"}", b"{}", b"[]"]),
)


@bounded(60)
@given(lines=st.lists(hostile_lines, min_size=1, max_size=6), newline=st.sampled_from([b"\n", b"\r\n"]))
def test_generated_jsonl_items(lines, newline):
    with Scratch() as d:
        path = d / "items.jsonl"
        path.write_bytes(newline.join(lines) + newline)
        check(run_cli("plan", "-t", "code-review", "-i", path, "--max-item-bytes", "2000"))


csv_cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@bounded(40)
@given(rows=st.lists(st.lists(csv_cells, min_size=1, max_size=4), min_size=0, max_size=5),
       bom=st.booleans(), raw=st.binary(max_size=30))
def test_generated_csv_items(rows, bom, raw):
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    data = ("\ufeff" if bom else "").encode() + buf.getvalue().encode("utf-8") + raw
    with Scratch() as d:
        path = d / "items.csv"
        path.write_bytes(data)
        check(run_cli("plan", "-t", "code-review", "-i", path))


id_values = st.one_of(st.text(max_size=80), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False),
                      st.from_regex(CUSTOM_ID_RE, fullmatch=True))


@bounded(30)
@given(records=st.lists(st.tuples(st.sampled_from(["id", "custom_id"]), id_values), min_size=1, max_size=6))
def test_generated_ids_are_valid_and_unique_or_refused(records):
    with Scratch() as d:
        path = d / "ids.jsonl"
        path.write_text("".join(json.dumps({key: value, "text": f"item {i}"}) + "\n"
                                for i, (key, value) in enumerate(records)))
        r = run_cli("prepare", "-t", "code-review", "-i", path, "--run", d / "run")
        check(r, (0, 1))
        if r.code == 0:
            ids = [json.loads(line)["custom_id"] for line in (d / "run" / "items.jsonl").read_text().splitlines()]
            assert len(ids) == len(set(ids)) == len(records)
            assert all(CUSTOM_ID_RE.fullmatch(i) for i in ids)
        else:
            assert not (d / "run").exists()


template_text = st.lists(st.one_of(
    st.text(max_size=20),
    st.sampled_from(["{{item.content}}", "{{item.path}}", "{{ item.id }}", "{{item.nope}}", "{{var.focus}}",
                     "{{var.x}}", "{{", "}}", "{{item.}}", "{{ITEM.CONTENT}}", "</item_content>", "{{{{item.content}}}}"]),
), max_size=6).map("".join)


@bounded(20)
@given(user=template_text, system=template_text, schema_patch=st.one_of(
    st.none(), st.just({"$ref": "https://example.com/s.json"}), st.just({"$ref": "#/$defs/missing"}),
    json_values.filter(lambda v: not isinstance(v, dict))))
def test_generated_templates(user, system, schema_patch):
    with Scratch() as d:
        tpl = d / "tpl"
        shutil.copytree(SKILL_DIR / "templates" / "code-review", tpl)
        (tpl / "user.md").write_text(user)
        (tpl / "system.md").write_text(system)
        if schema_patch is not None:
            schema = json.loads((tpl / "schema.json").read_text())
            schema["properties"]["extra"] = schema_patch
            (tpl / "schema.json").write_text(json.dumps(schema))
        for name, text in SRC.items():
            (d / name).write_text(text)
        check(run_cli("plan", "-t", tpl, "-i", d / "a.py"), (0, 1))


RUN_FILES = ["run.json", "requests.jsonl", "items.jsonl", "results.jsonl", "journal.jsonl", "schema.json",
             "summary.json", "merged.jsonl"]


@bounded(30)
@given(name=st.sampled_from(RUN_FILES), where=st.floats(0, 1), junk=st.one_of(
    st.binary(min_size=1, max_size=20), st.sampled_from([b"\n", b"{}\n", b"[1]\n", b"null\n", b'{"custom_id": 7}\n',
                                                        b"NaN\n", b"[" * 5000 + b"\n"])),
    command=st.sampled_from(["merge", "report", "status", "collect"]))
def test_generated_run_damage(base_run, name, where, junk, command):
    with Scratch() as d:
        run = d / "run"
        shutil.copytree(base_run, run)
        path = run / name
        data = path.read_bytes()
        cut = int(len(data) * where)
        path.write_bytes(data[:cut] + junk + data[cut:])
        before = snapshot(run)
        r = run_cli(command, run)
        check(r, (0, 1))
        if r.code == 1:
            assert snapshot(run) == before


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished direct-mode run on the emulator, built once for the damage examples."""
    home = tmp_path_factory.mktemp("gen-base")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.delenv("ANTHROPIC_API_KEY", raising=False)
        for name, text in SRC.items():
            os.makedirs("src", exist_ok=True)
            Path("src", name).write_text(text)
        r = run_cli("run", "-t", "code-review", "-i", "src/*.py", "--mode", "direct", "--emulate", "--run", "run")
        assert r.code == 0, r.stderr
    return home / "run"
