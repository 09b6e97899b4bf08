"""`run` drives every mode: direct and headless to the end, agents to the first wave, auto by plan's advice."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import require_tool, command
from test_headless import sandbox


def items(n: int, name: str = "items.jsonl") -> str:
    Path(name).write_text("".join(json.dumps({"id": f"t{i}", "text": f"ticket number {i}"}) + "\n" for i in range(n)))
    return name


def merged(run: Path) -> dict:
    return {r["custom_id"]: r for r in map(json.loads, (run / "merged.jsonl").read_text().splitlines())}


def test_run_direct_emulated_goes_to_the_end(bp):
    r = bp("run", "-t", "code-review", "-i", items(6), "--mode", "direct", "--emulate", "--run", "job")
    assert r.code == 0, r.stderr
    assert r.receipt["mode"] == "direct" and r.receipt["counts"]["ok"] == 6
    assert r.receipt["direct"]["counts"]["succeeded"] == 6 and r.receipt["next"] is None
    assert {m["status"] for m in merged(Path("job")).values()} == {"ok"}
    assert Path("job/report.html").exists()
    # direct mode writes the 5-minute cache, batch the 1-hour one
    first = json.loads(Path("job/requests.jsonl").read_text().splitlines()[0])
    assert first["params"]["system"][0]["cache_control"]["ttl"] == "5m"
    again = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "direct", "--emulate", "--run", "job")
    assert again.code == 0 and again.receipt["resumed"] is True
    assert again.receipt["direct"]["counts"]["succeeded"] == 0  # nothing re-sent


def test_run_agents_prints_the_first_wave(bp):
    r = bp("run", "-t", "code-review", "-i", items(12), "--mode", "agents", "--run", "job")
    assert r.code == 0, r.stderr
    assert r.receipt["mode"] == "agents" and len(r.receipt["tasks"]) == 10
    assert r.receipt["next"].startswith(command("collect"))
    assert len(list(Path("job/prompts").glob("*.md"))) == 12


def test_run_auto_follows_the_plan(bp):
    r = bp("run", "-t", "code-review", "-i", items(30), "--emulate", "--run", "big")
    assert r.code == 0, r.stderr
    assert r.receipt["mode"] == "batch" and r.receipt["counts"]["ok"] == 30
    assert "mode batch" in r.stderr
    urgent = bp("run", "-t", "code-review", "-i", "items.jsonl", "--emulate", "--urgent", "--run", "fast")
    assert urgent.code == 0 and urgent.receipt["mode"] == "direct"
    few = bp("run", "-t", "code-review", "-i", items(3, "few.jsonl"), "--run", "few")
    assert few.code == 0 and few.receipt["mode"] == "agents"


def test_run_resumed_with_another_mode_is_refused(bp):
    assert bp("run", "-t", "code-review", "-i", items(3), "--mode", "agents", "--run", "job").code == 0
    r = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "direct", "--emulate", "--run", "job")
    assert r.code == 1 and "Error:" in r.stderr and "Hint:" in r.stderr
    assert not Path("job/results.jsonl").exists()


def test_run_headless_emulated_with_the_real_claude_cli(tmp_path):
    claude = require_tool("claude")
    items(3, str(tmp_path / "items.jsonl"))
    body = (f'cd "$WORK" && "$PY" -m batchpilot run -t code-review -i items.jsonl --mode headless --emulate '
            f'--parallel 2 --run job > "$WORK/receipt.json"')
    proc = sandbox(tmp_path, body, env={"BATCHPILOT_CLAUDE": claude})
    assert proc.returncode == 0, proc.stderr
    receipt = json.loads((tmp_path / "receipt.json").read_text())
    assert receipt["mode"] == "headless" and receipt["counts"]["ok"] == 3, receipt
    assert receipt["headless"]["counts"]["succeeded"] == 3


def test_run_direct_with_nothing_listening_is_an_error_and_stays_resumable(bp, monkeypatch, emulator):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # ANTHROPIC_BASE_URL points at a closed port (conftest)
    r = bp("run", "-t", "code-review", "-i", items(3), "--mode", "direct", "--run", "job")
    assert r.code == 1 and "cannot reach the API" in r.stderr and "Hint:" in r.stderr
    # Nothing reached the API, so an explicit --emulate may still turn the run into a rehearsal ...
    again = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "direct", "--emulate", "--run", "job")
    assert again.code == 0 and again.receipt["counts"]["ok"] == 3 and again.receipt["emulated"] is True
    # ... which it then stays: the API never replaces the emulator.
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator().base_url)
    assert bp("retry", "job").receipt["emulated"] is True


def test_run_auto_with_emulate_rehearses_an_api_mode_even_for_a_handful(bp):
    r = bp("run", "-t", "code-review", "-i", items(3), "--emulate", "--run", "job")
    assert r.code == 0, r.stderr
    assert r.receipt["mode"] == "batch" and r.receipt["counts"]["ok"] == 3
    assert "--emulate rehearses the API modes" in r.stderr


def test_a_rehearsal_and_the_real_job_never_resume_each_other(bp, monkeypatch, emulator):
    rehearsal = bp("run", "-t", "code-review", "-i", items(2), "--mode", "direct", "--emulate")
    assert rehearsal.code == 0 and rehearsal.receipt["emulated"] is True, rehearsal.stderr
    # The same job for real (a key, the API played by an emulator): a new run, not the rehearsal's placeholders.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator().base_url)
    real = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "direct")
    assert real.code == 0 and real.receipt["emulated"] is False, real.stderr
    assert real.receipt["run"] != rehearsal.receipt["run"] and not real.receipt.get("finished")
    assert real.receipt["direct"]["counts"]["succeeded"] == 2
    # Typed again, each finds its own finished run.
    again = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "direct", "--emulate")
    assert again.receipt["finished"] is True and again.receipt["run"] == rehearsal.receipt["run"]
    assert again.receipt["emulated"] is True
    real_again = bp("run", "-t", "code-review", "-i", "items.jsonl", "--mode", "direct")
    assert real_again.receipt["finished"] is True and real_again.receipt["run"] == real.receipt["run"]
    assert real_again.receipt["emulated"] is False


def test_a_run_without_run_lists_each_skipped_item_once(bp):
    docs = Path("docs")
    docs.mkdir()
    (docs / "small.txt").write_text("a short note about the weather", encoding="utf-8")
    (docs / "big.txt").write_text("word " * 200, encoding="utf-8")
    got = bp("run", "--template", "summarize", "--items", "docs", "--max-item-bytes", "100", "--emulate")
    assert got.code == 0, got.stderr
    run = Path(got.receipt["run"])
    skipped = [json.loads(line) for line in (run / "skipped.jsonl").read_text().splitlines()]
    assert [s["source"] for s in skipped] == ["docs/big.txt"]  # once, though the job's items were read twice
    assert json.loads((run / "run.json").read_text())["skipped"] == {"oversized": 1}
