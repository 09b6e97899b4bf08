"""Items: every source kind, custom_id derivation, and skipped items with their reasons."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from batchpilot.core.errors import BatchpilotError
from batchpilot.prepare.items import CUSTOM_ID_RE, derive_id, file_ids, load_items


def collect(src, **kw):
    skipped = []
    items = list(load_items(src, lambda s, r, d: skipped.append((s, r)), **kw))
    return items, skipped


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, mode) as fh:
        fh.write(text)


def test_glob_recursive_in_sorted_order_with_ids_relative_to_glob_base():
    write("src/b.py", "b = 1\n")
    write("src/a.py", "a = 1\n")
    write("src/pkg/c.py", "c = 1\n")
    write("src/notes.txt", "not python\n")
    items, skipped = collect("src/**/*.py")
    assert [i.source for i in items] == ["src/a.py", "src/b.py", "src/pkg/c.py"]
    assert [i.custom_id for i in items] == ["a-py", "b-py", "pkg-c-py"]
    assert items[0].content == "a = 1\n" and items[0].kind == "file" and items[0].path == "src/a.py"
    assert skipped == []


def test_directory_skips_hidden_entries():
    write("d/x.md", "# x\n")
    write("d/.git/config", "[core]\n")
    write("d/.env", "SECRET=1\n")
    items, _ = collect("d")
    assert [i.custom_id for i in items] == ["x-md"]


def test_binary_empty_oversized_and_unreadable_are_skipped_with_reasons():
    write("in/ok.txt", "fine\n")
    write("in/blob.bin", b"\x00\x01\x02", mode="wb")
    write("in/latin1.txt", "caf\xe9\n".encode("latin-1"), mode="wb")
    write("in/empty.txt", "   \n")
    write("in/big.txt", "x" * 5000)
    os.symlink("in/missing-target", "in/dangling.txt")
    items, skipped = collect("in/*", max_item_bytes=1000)
    assert [i.custom_id for i in items] == ["ok-txt"]
    assert sorted(skipped) == sorted([
        ("in/big.txt", "oversized"), ("in/blob.bin", "binary"), ("in/dangling.txt", "unreadable"),
        ("in/empty.txt", "empty"), ("in/latin1.txt", "binary"),
    ])


def test_glob_matching_nothing_is_an_error_with_a_hint():
    with pytest.raises(BatchpilotError) as exc:
        collect("nowhere/**/*.py")
    assert "nowhere/**/*.py" in exc.value.message
    assert "quote" in exc.value.hint


def test_jsonl_ids_from_custom_id_id_or_position():
    lines = [
        {"custom_id": "given_1", "text": "one"},
        {"id": 42, "text": "two"},
        {"id": "ticket #7 / urgent", "text": "three"},
        {"text": "four"},
        {"id": "x" * 80, "text": "five"},
    ]
    write("t.jsonl", "\n".join(json.dumps(l) for l in lines) + "\n\n")
    items, _ = collect("t.jsonl")
    ids = [i.custom_id for i in items]
    assert ids[0] == "given_1" and ids[1] == "42" and ids[3] == "line-4"
    assert ids[2].startswith("ticket-7-urgent-") and len(ids[2]) <= 64
    assert len(ids[4]) == 64 and ids[4].startswith("xxxx")
    assert all(CUSTOM_ID_RE.fullmatch(i) for i in ids)
    assert items[1].content == "two" and items[1].fields["id"] == 42


def test_jsonl_record_without_text_field_is_rendered_as_json():
    write("r.jsonl", json.dumps({"id": "a", "amount": 3, "currency": "EUR"}) + "\n")
    items, _ = collect("r.jsonl")
    assert json.loads(items[0].content) == {"id": "a", "amount": 3, "currency": "EUR"}


def test_content_field_option():
    write("r.jsonl", json.dumps({"id": "a", "body": "ignored", "note": "this one"}) + "\n")
    items, _ = collect("r.jsonl", content_field="note")
    assert items[0].content == "this one"


def test_ids_are_stable_across_runs():
    write("t.jsonl", "".join(json.dumps({"id": f"order {n}", "text": "t"}) + "\n" for n in range(20)))
    first = [i.custom_id for i in collect("t.jsonl")[0]]
    second = [i.custom_id for i in collect("t.jsonl")[0]]
    assert first == second and len(set(first)) == 20


def test_csv_rows_with_header():
    write("t.csv", 'id,text,lang\n1,"hello, world",en\n2,"multi\nline",fr\n\n')
    items, _ = collect("t.csv")
    assert [i.custom_id for i in items] == ["1", "2"]
    assert items[0].content == "hello, world" and items[1].fields["lang"] == "fr"
    assert items[1].content == "multi\nline"


def test_csv_without_id_column_uses_row_numbers():
    write("t.csv", "text\nalpha\nbeta\n")
    assert [i.custom_id for i in collect("t.csv")[0]] == ["row-1", "row-2"]


def test_stdin_one_item_per_line_blank_lines_skipped():
    items = []
    skipped = []
    stream = io.StringIO("first\n\nthird\n")
    items = list(load_items("-", lambda s, r, d: skipped.append((s, r)), stdin=stream))
    assert [(i.custom_id, i.content) for i in items] == [("line-1", "first"), ("line-3", "third")]
    assert skipped == [("stdin:2", "empty")]


def test_derive_id_rules():
    assert derive_id("simple_id-1") == "simple_id-1"
    made = derive_id("a b")
    assert re.fullmatch(r"a-b-[0-9a-f]{10}", made)
    assert derive_id("a b") == made  # stable
    assert derive_id("a/b") != derive_id("a b")  # lossy forms keep the original apart
    assert len(derive_id("é" * 100)) <= 64 and CUSTOM_ID_RE.fullmatch(derive_id("é" * 100))


def test_file_ids_that_collide_after_sanitising_all_get_hashes():
    ids = file_ids(["a.b/c", "a-b/c", "other.py"])
    assert ids[2] == "other-py"
    assert ids[0] != ids[1] and ids[0].startswith("a-b-c-") and ids[1].startswith("a-b-c-")
    assert all(CUSTOM_ID_RE.fullmatch(i) for i in ids)


def test_very_long_paths_are_shortened_with_a_hash():
    long_dir = "/".join(["segment%02d" % n for n in range(12)])
    ids = file_ids([long_dir + "/one.py", long_dir + "/two.py"])
    assert all(len(i) <= 64 and CUSTOM_ID_RE.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]


def test_append_after_a_torn_last_line_cuts_the_torn_tail(tmp_path):
    from batchpilot.core.files import append_jsonl, iter_jsonl

    path = tmp_path / "results.jsonl"
    append_jsonl(path, [{"n": 1}])
    with open(path, "a") as fh:
        fh.write('{"n": 2, "half')  # what a kill -9 in the middle of a write leaves
    assert [r["n"] for r in iter_jsonl(path)] == [1]
    append_jsonl(path, [{"n": 3}])
    assert [r["n"] for r in iter_jsonl(path)] == [1, 3]
    assert path.read_text() == '{"n":1}\n{"n":3}\n'
