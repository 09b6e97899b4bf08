"""`plan` and `prepare` on the bundled sample job: receipts, files, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SAMPLES, command

SAMPLE_GLOB = str(SAMPLES / "*.py")


def lines(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_plan_reports_tokens_costs_per_mode_and_a_recommendation(bp):
    r = bp("plan", "--template", "code-review", "--items", SAMPLE_GLOB)
    assert r.code == 0, r.stderr
    p = r.receipt
    assert p["items"] == 8 and p["model"] == "claude-sonnet-5-5"
    assert p["tokens"]["input"] > 8 * 500 and p["tokens"]["shared_prefix"] > 500
    modes = p["modes"]
    assert modes["batch"]["cost_usd"] == round(modes["direct"]["cost_usd"] / 2, 4) or abs(modes["batch"]["cost_usd"] * 2 - modes["direct"]["cost_usd"]) < 1e-3
    assert modes["batch_cached"]["cost_usd"] < modes["batch"]["cost_usd"]
    assert modes["agents"]["cost_usd"] is None and "plan" in modes["agents"]["note"]
    assert p["prices"]["as_of"]
    assert p["recommended"]["mode"] == "agents"  # 8 items: a handful
    assert p["next"].startswith(command("prepare"))  # runnable from any directory: the shim, absolute
    assert not list(Path(".").iterdir())  # plan writes nothing


def test_plan_recommendations_follow_the_decision_table(bp, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # with a key every mode can run (without one: test_claude_code.py)
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps({"id": n, "text": f"ticket {n}"}) + "\n" for n in range(50)))
    base = ("plan", "--template", "code-review", "--items", str(data))
    assert bp(*base).receipt["recommended"]["mode"] == "batch"
    assert bp(*base, "--urgent").receipt["recommended"]["mode"] == "direct"
    assert bp(*base, "--needs-tools").receipt["recommended"]["mode"] == "agents"
    assert bp(*base, "--dependent").receipt["recommended"]["mode"] == "sequential"
    assert bp(*base, "--dependent").receipt["next"] is None


def test_plan_with_unknown_model_has_null_cost_and_a_warning(bp):
    r = bp("plan", "--template", "code-review", "--items", SAMPLE_GLOB, "--model", "claude-imaginary-9")
    assert r.code == 0
    assert r.receipt["modes"]["direct"]["cost_usd"] is None and r.receipt["prices"] is None
    assert "unknown model" in r.stderr


def test_plan_with_explicit_prices_for_an_unknown_model(bp):
    r = bp("plan", "--template", "code-review", "--items", SAMPLE_GLOB, "--model", "my-finetune", "--price-in", "1", "--price-out", "2")
    assert r.receipt["modes"]["direct"]["cost_usd"] > 0


def test_prepare_writes_the_run_directory(bp):
    r = bp("prepare", "--template", "code-review", "--items", SAMPLE_GLOB, "--run", "runs/one")
    assert r.code == 0, r.stderr
    run = Path("runs/one")
    assert r.receipt["run"] == str(run.absolute()) and r.receipt["items"] == 8 and r.receipt["unchanged"] is False
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["item_count"] == 8 and manifest["template"]["name"] == "code-review"
    assert manifest["template"]["hash"].startswith("sha256:") and manifest["format_version"] == 1
    items = lines(run / "items.jsonl")
    requests = lines(run / "requests.jsonl")
    assert [i["custom_id"] for i in items] == [q["custom_id"] for q in requests]
    assert items[0]["custom_id"] == "accounts-py"
    assert set(requests[0]) == {"custom_id", "params"}
    assert requests[0]["params"]["output_config"]["format"]["schema"] == json.loads((run / "schema.json").read_text())
    assert lines(run / "journal.jsonl")[0]["event"] == "prepared"
    assert not [p for p in Path("runs").iterdir() if p.name.startswith(".")]  # no temp dir left


def test_prepare_default_run_directory(bp):
    r = bp("prepare", "--template", "code-review", "--items", SAMPLE_GLOB)
    run = Path(r.receipt["run"])
    assert run.parent == Path(".batchpilot/runs").absolute() and run.name.endswith("-code-review")


def test_reprepare_identical_is_a_no_op_and_different_is_refused(bp):
    args = ("prepare", "--template", "code-review", "--items", SAMPLE_GLOB, "--run", "r")
    assert bp(*args).code == 0
    before = Path("r/run.json").read_bytes()
    again = bp(*args)
    assert again.code == 0 and again.receipt["unchanged"] is True
    assert Path("r/run.json").read_bytes() == before
    changed = bp(*args, "--max-tokens", "100")
    assert changed.code == 1
    assert "different inputs" in changed.stderr and "Hint:" in changed.stderr
    assert Path("r/run.json").read_bytes() == before


def test_skipped_items_are_counted_and_listed(bp):
    Path("src").mkdir()
    Path("src/a.py").write_text("x = 1\n")
    Path("src/b.py").write_bytes(b"\x00\x00")
    Path("src/c.py").write_text("")
    r = bp("prepare", "--template", "code-review", "--items", "src/*.py", "--run", "r")
    assert r.code == 0
    assert r.receipt["items"] == 1 and r.receipt["skipped"] == {"binary": 1, "empty": 1}
    listed = lines(Path("r/skipped.jsonl"))
    assert {(s["source"], s["reason"]) for s in listed} == {("src/b.py", "binary"), ("src/c.py", "empty")}


def test_items_from_stdin(bp):
    r = bp("prepare", "--template", "code-review", "--items", "-", "--run", "r", input="alpha\nbeta\n")
    assert r.code == 0 and r.receipt["items"] == 2
    assert [i["custom_id"] for i in lines(Path("r/items.jsonl"))] == ["line-1", "line-2"]


def test_template_variables_reach_the_system_text(bp):
    r = bp("prepare", "--template", "code-review", "--items", SAMPLE_GLOB, "--run", "r", "--var", "focus=SQL injection only")
    assert r.code == 0
    system = lines(Path("r/requests.jsonl"))[0]["params"]["system"][0]["text"]
    assert "Focus on SQL injection only." in system


def test_plan_count_tokens_asks_the_api_and_replaces_the_local_estimate(bp, emulator):
    import anthropic

    local = bp("plan", "--template", "code-review", "--items", SAMPLE_GLOB).receipt
    counted = bp("plan", "--template", "code-review", "--items", SAMPLE_GLOB, "--count-tokens", "--emulate")
    assert counted.code == 0, counted.stderr
    assert counted.receipt["tokens"]["source"].startswith("count_tokens API on 8 of 8")
    # The emulator counts with its own tokenizer: all 8 requests were counted, so the plan carries exactly
    # the API's total, which differs from the local estimate (by less than its stated error).
    r = bp("prepare", "--template", "code-review", "--items", SAMPLE_GLOB, "--run", "r")
    assert r.code == 0, r.stderr
    client = anthropic.Anthropic(api_key="x", base_url=emulator().base_url)
    keys = ("model", "messages", "system", "tools", "tool_choice", "output_config")
    api = sum(client.messages.count_tokens(**{k: v for k, v in line["params"].items() if k in keys}).input_tokens
              for line in lines(Path("r/requests.jsonl")))
    assert counted.receipt["tokens"]["input"] == api != local["tokens"]["input"]
    assert abs(local["tokens"]["input"] / api - 1) < 0.25


def test_plan_count_tokens_without_a_key_points_at_emulate(bp):
    r = bp("plan", "--template", "code-review", "--items", SAMPLE_GLOB, "--count-tokens")
    assert r.code == 1
    assert "ANTHROPIC_API_KEY is not set" in r.stderr and "--emulate" in r.stderr
