"""merge: the result-case corpus, input order at scale, usage and cost, exports, receipts and bad input."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchpilot.core.files import append_jsonl, iter_jsonl
from batchpilot.results.merge import STATUSES, merge_run
from conftest import command

CASES_FILE = Path(__file__).parent / "merge_cases" / "cases.json"
TEMPLATE = Path(__file__).parent / "merge_cases" / "template"
CORPUS = json.loads(CASES_FILE.read_text(encoding="utf-8"))
VALID = CORPUS["valid"]
VALID_TEXT = json.dumps(VALID, indent=2)
PLACEHOLDERS = {
    "$VALID_TEXT": VALID_TEXT,
    "$TRUNCATED_TEXT": VALID_TEXT[: len(VALID_TEXT) // 2],
    "$VALID_HALF_1": VALID_TEXT[: len(VALID_TEXT) // 2],
    "$VALID_HALF_2": VALID_TEXT[len(VALID_TEXT) // 2:],
}


def expand(value):
    """Fill the corpus placeholders: "$VALID" is the valid object, $..._TEXT are texts inside strings."""
    if value == "$VALID":
        return json.loads(json.dumps(VALID))
    if isinstance(value, str):
        for name in sorted(PLACEHOLDERS, key=len, reverse=True):
            value = value.replace(name, PLACEHOLDERS[name])
        return value
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


def template_dir(base: Path, style: str) -> Path:
    """The tests' frozen findings template (a copy of code-review), with the given output style."""
    target = base / f"template-{style}"
    if not target.exists():
        shutil.copytree(TEMPLATE, target)
        meta = json.loads((target / "template.json").read_text())
        meta["output_style"] = style
        (target / "template.json").write_text(json.dumps(meta))
    return target


def prepare_run(base: Path, style: str, ids: list[str], name: str | None = None, mode: str = "batch") -> Path:
    """A real run directory for `ids`, made by prepare's own code path."""
    from batchpilot.prepare.job import open_job
    from batchpilot.rundir.create import create_run

    items = base / f"items-{name or style}.jsonl"
    with open(items, "w", encoding="utf-8") as fh:
        for cid in ids:
            fh.write(json.dumps({"id": cid, "text": f"def f():\n    return {cid!r}\n"}) + "\n")
    job = open_job(str(template_dir(base, style)), str(items), mode=mode)
    run = base / f"run-{name or style}"
    create_run(run, job.items(), job.skipped, job.builder, job.settings(), job.manifest())
    return run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every corpus case merged: {case name: merged record}, plus each style's summary."""
    base = tmp_path_factory.mktemp("corpus")
    merged, summaries = {}, {}
    for style in ("json_schema", "tool", "prompt"):
        cases = [c for c in CORPUS["cases"] if c["style"] == style]
        run = prepare_run(base, style, [c["name"] for c in cases])
        # Items' records interleave in a shuffled order; one item's records keep the corpus order, because a
        # later line is a later append (it decides between equal attempt numbers).
        queues = {c["name"]: [{"custom_id": c["name"], **expand(r)} for r in c["records"]] for c in cases}
        slots = [name for name, queue in queues.items() for _ in queue]
        random.Random(7).shuffle(slots)
        append_jsonl(run / "results.jsonl", [queues[name].pop(0) for name in slots])
        summaries[style] = merge_run(run, formats=("jsonl", "csv", "md"))
        for record in iter_jsonl(run / "merged.jsonl"):
            merged[record["custom_id"]] = record
    return merged, summaries


def test_corpus_has_the_required_cases():
    names = {c["name"] for c in CORPUS["cases"]}
    assert len(names) >= 40
    for needed in ("js-fenced", "js-prose-after", "prompt-two-objects-first-valid", "js-truncated", "js-refusal",
                   "js-empty-content", "tool-wrong-name", "js-schema-nested-enum", "js-dup-later-errored",
                   "unknown-custom-id", "expired", "canceled"):
        assert needed in names
    error_types = {c["expect"].get("error_type") for c in CORPUS["cases"] if c["expect"]["status"] == "errored"}
    assert {"invalid_request_error", "authentication_error", "permission_error", "not_found_error", "request_too_large",
            "rate_limit_error", "api_error", "overloaded_error", "billing_error", "timeout_error"} <= error_types


@pytest.mark.parametrize("case", CORPUS["cases"], ids=[c["name"] for c in CORPUS["cases"]])
def test_corpus_case(corpus, case):
    merged, _ = corpus
    record = merged[case["name"]]
    expect = case["expect"]
    assert record["status"] == expect["status"], record["error"]
    assert set(record) == {"custom_id", "status", "output", "error", "attempts", "mode", "model", "usage", "cost_usd", "source"}
    if expect["status"] == "ok":
        assert record["error"] is None
        assert record["output"]["findings"][0]["file"] == "a.py"
    else:
        assert record["output"] is None
        error = record["error"]
        assert error["type"] == expect.get("error_type", error["type"])
        # a message a person can act on: says what happened, quotes no Python internals
        assert len(error["message"]) >= 15
        for noise in ("Traceback", "NoneType", "dict object", "KeyError"):
            assert noise not in error["message"]
    if "message" in expect:
        assert expect["message"] in record["error"]["message"]
    for key in ("attempts", "mode", "cost_usd"):
        if key in expect:
            assert record[key] == expect[key]
    if expect["status"] == "invalid" and record["error"]["type"] == "schema":
        assert record["error"]["details"][0]["path"].startswith("$")


def test_corpus_summaries(corpus):
    merged, summaries = corpus
    total = {s: 0 for s in STATUSES}
    for summary in summaries.values():
        for status, n in summary["counts"].items():
            total[status] += n
    expected = {s: sum(1 for c in CORPUS["cases"] if c["expect"]["status"] == s) for s in STATUSES}
    assert total == expected
    assert summaries["json_schema"]["unknown_results"] == 1
    assert summaries["json_schema"]["failures_total"] == sum(1 for r in merged.values() if r["status"] != "ok" and r["custom_id"] in
                                                              {c["name"] for c in CORPUS["cases"] if c["style"] == "json_schema"})


def test_billed_usage_is_summed_over_succeeded_attempts_only(corpus):
    merged, _ = corpus
    usage = CORPUS["usage"]
    two = merged["js-dup-later-invalid"]["usage"]  # two succeeded attempts, both billed
    assert two == {k: 2 * v for k, v in usage.items()}
    one = merged["js-dup-later-errored"]["usage"]  # the errored attempt is free
    assert one == usage
    assert merged["expired"]["usage"]["input_tokens"] == 0 and merged["expired"]["cost_usd"] == 0.0


def test_cost_batch_direct_and_cache(tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000, "cache_read_input_tokens": 1_000_000,
             "cache_creation_input_tokens": 1_000_000, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_000_000}}
    message = {"content": [{"type": "text", "text": json.dumps(VALID)}], "stop_reason": "end_turn", "usage": usage}
    append_jsonl(run / "results.jsonl", [
        {"custom_id": "a", "attempt": 1, "mode": "batch", "result": {"type": "succeeded", "message": message}},
        {"custom_id": "b", "attempt": 1, "mode": "direct", "result": {"type": "succeeded", "message": message}},
    ])
    summary = merge_run(run)
    # claude-sonnet-5: $2 in, $10 out, read 0.1x, 1h write 2x → 2 + 10 + 0.2 + 4 = 16.2 standard-rate dollars
    records = {r["custom_id"]: r for r in iter_jsonl(run / "merged.jsonl")}
    assert records["b"]["cost_usd"] == pytest.approx(16.2)
    assert records["a"]["cost_usd"] == pytest.approx(8.1)
    assert summary["cost_usd"] == pytest.approx(24.3)
    assert summary["cost_without_batch_usd"] == pytest.approx(32.4)
    assert summary["standard_cost_usd"] == pytest.approx(2 * (3 * 2 + 10))
    assert summary["savings_usd"]["batch"] == pytest.approx(8.1)
    assert summary["savings_usd"]["caching"] == pytest.approx(32 - 32.4)
    assert summary["by_mode"]["batch"]["cost_usd"] == pytest.approx(8.1)


def test_unknown_price_gives_null_costs(tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a"])
    manifest = json.loads((run / "run.json").read_text())
    manifest["model"], manifest["prices"] = "claude-unknown-9", None
    (run / "run.json").write_text(json.dumps(manifest))
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "mode": "batch", "result": {
        "type": "succeeded", "message": {"content": [{"type": "text", "text": json.dumps(VALID)}], "stop_reason": "end_turn",
                                         "usage": {"input_tokens": 5, "output_tokens": 5}}}}])
    summary = merge_run(run)
    assert summary["cost_usd"] is None and summary["usage"]["input_tokens"] == 5
    assert next(iter_jsonl(run / "merged.jsonl"))["cost_usd"] is None


def test_input_order_holds_for_100k_shuffled_results(tmp_path):
    n = 100_000
    ids = [f"item-{i:06d}" for i in range(n)]
    run = prepare_run(tmp_path, "json_schema", ids, name="big")
    text = json.dumps(VALID)
    lines = []
    for i, cid in enumerate(ids):
        if i % 10 == 3:
            lines.append(json.dumps({"custom_id": cid, "attempt": 1, "mode": "batch", "result": {"type": "expired"}}))
        lines.append(json.dumps({"custom_id": cid, "attempt": 1 + (i % 10 == 3), "mode": "batch", "result": {"type": "succeeded", "message": {
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 20}}}}))
    random.Random(1).shuffle(lines)
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    # How fast is a figure, not a test: bench/bench_merge.py measures records per second at 100,000 items.
    summary = merge_run(run)
    assert summary["counts"]["ok"] == n and summary["result_records"] == n + n // 10
    # Only the succeeded attempts are billed, wherever the shuffle put an item's expired first attempt.
    assert summary["usage"]["input_tokens"] == 10 * n and summary["usage"]["output_tokens"] == 20 * n
    previous = ""
    for number, record in enumerate(iter_jsonl(run / "merged.jsonl")):
        assert record["custom_id"] == ids[number]
        assert record["custom_id"] > previous
        previous = record["custom_id"]
        # The later, succeeded attempt wins over the expired one, whichever line came first.
        assert record["status"] == "ok" and record["attempts"] == (2 if number % 10 == 3 else 1), record
    assert number == n - 1


def test_exports_csv_one_row_per_finding_and_md(corpus, tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["two", "none", "bad"])
    two = dict(VALID, findings=VALID["findings"] * 2)
    hostile = dict(VALID, summary="=HYPERLINK(\"http://x\")|<b>pipe</b>\nnext")
    append_jsonl(run / "results.jsonl", [
        {"custom_id": "two", "attempt": 1, "result": {"type": "succeeded", "output": two}},
        {"custom_id": "none", "attempt": 1, "result": {"type": "succeeded", "output": dict(hostile, findings=[])}},
        {"custom_id": "bad", "attempt": 1, "result": {"type": "expired"}},
    ])
    summary = merge_run(run, formats=("csv", "md"))
    assert set(summary["files"]) == {"merged.jsonl", "merged.csv", "merged.md", "summary.json"}
    with open(run / "merged.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["custom_id"] for r in rows] == ["two", "two", "none", "bad"]
    assert rows[0]["severity"] == "high" and rows[0]["line_start"] == "3" and rows[0]["summary"] == "One bug."
    assert rows[2]["summary"].startswith("'=HYPERLINK")  # not a live formula in a spreadsheet
    assert rows[3]["error_type"] == "expired" and rows[3]["severity"] == ""
    md = (run / "merged.md").read_text().splitlines()
    assert md[0].startswith("| custom_id | status | source | summary | file |")
    assert len(md) == 2 + 4
    assert "&lt;b&gt;pipe&lt;/b&gt;" in md[4] and "\\|" in md[4] and "<br>" in md[4]
    assert all(line.count(" | ") == md[0].count(" | ") for line in md[2:])


def test_schema_falls_back_to_requests_when_template_and_copy_are_gone(tmp_path):
    run = prepare_run(tmp_path, "tool", ["a"])
    (run / "schema.json").unlink()
    shutil.rmtree(tmp_path / "template-tool")
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "message": {
        "content": [{"type": "tool_use", "name": "emit_result", "input": VALID}], "stop_reason": "tool_use"}}}])
    summary = merge_run(run)
    assert summary["counts"]["ok"] == 1 and summary["schema_source"] == "requests.jsonl"


def test_schema_falls_back_to_prompt_text(tmp_path):
    run = prepare_run(tmp_path, "prompt", ["a"])
    (run / "schema.json").unlink()
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "output": {"findings": []}}}])
    summary = merge_run(run)
    assert summary["counts"]["invalid"] == 1 and summary["schema_source"] == "requests.jsonl"


def test_merge_cli_receipt_and_next(bp, tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "mode": "batch", "result": {"type": "succeeded", "output": VALID}},
                                         {"custom_id": "ghost", "attempt": 1, "result": {"type": "expired"}}])
    result = bp("merge", run, "--format", "csv")
    assert result.code == 0, result.stderr
    receipt = result.receipt
    assert receipt["command"] == "merge" and receipt["run"] == str(Path(run).absolute())
    assert receipt["counts"] == {"ok": 1, "invalid": 0, "errored": 0, "expired": 0, "canceled": 0, "missing": 1}
    assert receipt["unknown_results"] == 1
    assert Path(receipt["files"]["merged.csv"]).exists()
    from batchpilot.cli.main import COMMANDS

    expected = "retry" if "retry" in COMMANDS else "report"
    assert receipt["next"] == command(expected, Path(run))
    assert "1 result record(s) name items that are not in this run" in result.stderr


def test_next_is_report_when_all_ok(bp, tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a"])
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    assert bp("merge", run).receipt["next"] == command("report", Path(run))


def test_no_results_yet_means_every_item_is_missing(tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    summary = merge_run(run)
    assert summary["counts"]["missing"] == 2 and summary["result_records"] == 0 and summary["cost_usd"] == 0.0


def test_records_without_id_or_result_are_counted_and_skipped(tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a"])
    append_jsonl(run / "results.jsonl", [{"result": {"type": "expired"}}, {"custom_id": "a"}, {"custom_id": "a", "result": "x"},
                                         {"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    (run / "results.jsonl").open("a").write("[1, 2]\n")
    summary = merge_run(run)
    assert summary["malformed_results"] == 4 and summary["counts"]["ok"] == 1


def test_torn_last_line_is_tolerated(tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    with open(run / "results.jsonl", "a") as fh:
        fh.write('{"custom_id": "b", "attempt": 1, "result": {"type": "succ')
    summary = merge_run(run)
    assert summary["counts"]["ok"] == 1 and summary["counts"]["missing"] == 1


@pytest.mark.parametrize("damage, message, hint", [
    ("no-run", "is not a run directory", "batchpilot prepare"),
    ("middle-line", "results.jsonl line 2: not valid JSON", "damaged"),
    ("no-items", "items.jsonl is missing or empty", "prepare"),
    ("bad-schema", "not a valid JSON Schema", "fix the schema"),
    ("items-dup", "repeated", "prepare it again"),
])
def test_bad_input_is_an_error_with_a_hint(bp, tmp_path, damage, message, hint):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    if damage == "no-run":
        run = tmp_path / "nowhere"
    elif damage == "middle-line":
        (run / "results.jsonl").write_text('{"custom_id":"a","result":{"type":"expired"}}\n{oops\n{"custom_id":"b","result":{"type":"expired"}}\n')
    elif damage == "no-items":
        (run / "items.jsonl").write_text("")
    elif damage == "bad-schema":
        (run / "schema.json").write_text(json.dumps({"type": "object", "properties": {"a": {"type": "nonsense"}}}))
    elif damage == "items-dup":
        line = (run / "items.jsonl").read_text().splitlines()[0]
        (run / "items.jsonl").write_text(line + "\n" + line + "\n")
    result = bp("merge", run)
    assert result.code == 1
    assert result.receipt is None and "Traceback" not in result.stderr
    assert message in result.stderr and "Hint:" in result.stderr and hint in result.stderr


def test_merge_is_idempotent_and_rerunnable(tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    first = merge_run(run)
    text = (run / "merged.jsonl").read_text()
    second = merge_run(run)
    assert (run / "merged.jsonl").read_text() == text and first["counts"] == second["counts"]
    append_jsonl(run / "results.jsonl", [{"custom_id": "b", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    assert merge_run(run)["counts"]["ok"] == 2
    # No temp files left behind (the run lock's file stays, as every writer's does: flock needs it).
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_merge_and_report_do_not_import_the_sdk():
    code = ("import sys; from batchpilot.cli import merge; import batchpilot.results.merge, batchpilot.report.markdown, "
            "batchpilot.report.html, batchpilot.results.exports, batchpilot.results.validate, batchpilot.results.extract; "
            "print('anthropic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_for_merge_and_report(bp):
    for command in ("merge", "report"):
        result = bp(command, "--help")
        assert result.code == 0 and "Example: batchpilot" in result.stdout
