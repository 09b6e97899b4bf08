"""`batchpilot direct RUN`: receipts, resume, account-level stops, the price guard, and crash safety —
Ctrl-C and kill -9 of a real subprocess against an emulator, counted on the server side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchpilot.emulator.behaviour.scenario import Step
from test_direct_support import Tap, make_run
from conftest import command


def results(run: Path) -> list[dict]:
    path = run / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def succeeded_ids(run: Path) -> set[str]:
    """What the executor reported written: complete lines only (a torn tail line was never acknowledged)."""
    from batchpilot.core.files import iter_jsonl

    return {r["custom_id"] for r in iter_jsonl(run / "results.jsonl") if r["result"]["type"] == "succeeded"}


def use_emulator(monkeypatch, emu) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")


def test_direct_with_emulate_writes_result_records_and_resumes_as_a_no_op(bp, tmp_path):
    run = make_run(bp, tmp_path, 12)
    result = bp("direct", run, "--emulate")
    assert result.code == 0, result.stderr
    receipt = result.receipt
    assert receipt["command"] == "direct" and receipt["mode"] == "direct"
    assert receipt["counts"] == {"succeeded": 12, "errored": {}, "skipped_already_done": 0, "not_run": 0}
    assert receipt["requests_sent"] == 12 and receipt["rate_limited_429"] == 0 and receipt["stopped"] is None
    assert receipt["tokens"]["input"] > 0 and receipt["tokens"]["output"] > 0 and receipt["cost_usd"] > 0
    assert receipt["next"] == command("merge", Path(run))
    records = results(run)
    assert len(records) == 12
    first = records[0]
    assert set(first) == {"custom_id", "result", "attempt", "mode", "at", "send"}  # send: its line in sends.jsonl
    assert first["attempt"] == 1 and first["mode"] == "direct"
    message = first["result"]["message"]
    assert first["result"]["type"] == "succeeded" and message["id"].startswith("msg_") and message["usage"]["input_tokens"] > 0
    events = [e["event"] for e in map(json.loads, (run / "journal.jsonl").read_text().splitlines())]
    assert events[-2:] == ["direct_started", "direct_stopped"]

    again = bp("direct", run, "--emulate")
    assert again.code == 0
    assert again.receipt["counts"]["skipped_already_done"] == 12 and again.receipt["requests_sent"] == 0
    assert len(results(run)) == 12


def test_final_errors_are_counted_by_type(bp, tmp_path):
    run = make_run(bp, tmp_path, 5)
    result = bp("direct", run, "--emulate", "--emulate-fault", "overloaded", "--max-attempts", "2")
    assert result.code == 0, result.stderr
    receipt = result.receipt
    assert receipt["counts"]["errored"] == {"overloaded_error": 5} and receipt["counts"]["succeeded"] == 0
    assert receipt["requests_sent"] == 10 and receipt["retries"] == 5
    assert {r["attempt"] for r in results(run)} == {2}


def test_an_account_level_error_stops_the_run(bp, emulator, monkeypatch, tmp_path):
    billing = Step(when={"last_user_contains": "item-0005"},
                   reply={"error": {"status": 400, "type": "invalid_request_error",
                                    "message": "Your credit balance is too low to access the Anthropic API."}})
    emu = emulator(scenario=[billing], latency=0.02)
    tap = Tap(emu)
    use_emulator(monkeypatch, emu)
    run = make_run(bp, tmp_path, 100)
    result = bp("direct", run, "--concurrency", "4")
    assert result.code == 1
    assert "Error: the API refused the account (400 invalid_request_error: Your credit balance is too low" in result.stderr
    assert "Hint: check the account's credits" in result.stderr and command("direct", Path(run)) in result.stderr
    assert result.receipt is None
    sent = sum(tap.sent_ids().values())
    assert sent <= 5 + 1 + 4  # what was before it, itself, and at most the requests already in flight
    assert "item-0005" not in {r["custom_id"] for r in results(run)}  # not the item's fault: left to resume
    last = json.loads((run / "journal.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "direct_stopped" and last["reason"] == "account_error"


def test_a_run_without_a_price_fails_closed(bp, tmp_path):
    run = make_run(bp, tmp_path, 2)
    manifest = json.loads((run / "run.json").read_text())
    manifest["prices"] = None
    (run / "run.json").write_text(json.dumps(manifest))
    result = bp("direct", run, "--emulate", "--max-cost", "1")
    assert result.code == 1
    assert "Error:" in result.stderr and "no price for model 'claude-haiku-4-5'" in result.stderr
    assert "Hint: prepare the run again with --price-in and --price-out" in result.stderr
    assert not (run / "results.jsonl").exists()


def test_max_cost_stop_suggests_resuming(bp, tmp_path):
    run = make_run(bp, tmp_path, 30)
    result = bp("direct", run, "--emulate", "--max-cost", "0.0005")
    assert result.code == 0, result.stderr
    receipt = result.receipt
    assert receipt["stopped"] == "max_cost" and receipt["cost_usd"] <= 0.0005 and receipt["counts"]["not_run"] > 0
    assert receipt["next"] == command("direct", Path(run))  # the run remembers it is emulated
    assert "Warning: stopped before exceeding --max-cost" in result.stderr


@pytest.mark.parametrize("args, code, error", [
    ((), 1, "ANTHROPIC_API_KEY is not set"),
    (("--emulate-rpm", "5"), 1, "shape the emulator"),
    (("--concurrency", "0"), 2, "--concurrency"),
])
def test_bad_invocations(bp, tmp_path, args, code, error):
    run = make_run(bp, tmp_path, 1)
    result = bp("direct", run, *args)
    assert result.code == code
    assert error in result.stderr and "Hint:" in result.stderr


def test_a_missing_run_is_an_error_with_a_hint(bp, tmp_path):
    result = bp("direct", tmp_path / "nope", "--emulate")
    assert result.code == 1 and "is not a run directory" in result.stderr and "Hint:" in result.stderr


def test_help_exits_zero(bp):
    result = bp("direct", "--help")
    assert result.code == 0 and "--max-cost" in result.stdout and "--rpm" in result.stdout


# ------------------------------------------------------------------ crash safety, as a real process


def spawn(run: Path, emu, *args: str) -> subprocess.Popen:
    env = dict(os.environ, ANTHROPIC_BASE_URL=emu.base_url, ANTHROPIC_API_KEY="test-key-not-real")
    return subprocess.Popen([sys.executable, "-m", "batchpilot", "direct", str(run), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_results(run: Path, count: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(succeeded_ids(run)) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} results after {timeout} s")


def test_kill_9_then_rerun_sends_no_succeeded_item_again(bp, emulator, tmp_path):
    n = 240
    emu = emulator(latency=0.03)
    tap = Tap(emu)
    run = make_run(bp, tmp_path, n)
    proc = spawn(run, emu, "--concurrency", "4")
    wait_for_results(run, 40, proc)
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(0.3)  # requests already in the server finish (and are counted) before we draw the line
    done_before = succeeded_ids(run)
    sent_before = tap.sent_ids()
    assert 40 <= len(done_before) < n

    rerun = spawn(run, emu, "--concurrency", "4")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    receipt = json.loads(out)
    assert receipt["counts"]["skipped_already_done"] == len(done_before)
    sent_after = tap.sent_ids() - sent_before
    assert not (set(sent_after) & done_before), "a succeeded item was sent again"
    assert sum(sent_after.values()) == receipt["requests_sent"] == n - len(done_before)
    assert succeeded_ids(run) == {f"item-{i:04d}" for i in range(n)}
    counts: dict[str, int] = {}
    for record in results(run):
        counts[record["custom_id"]] = counts.get(record["custom_id"], 0) + 1
    assert max(counts.values()) == 1


def test_ctrl_c_records_in_flight_requests_and_says_how_to_resume(bp, emulator, tmp_path):
    n = 80
    emu = emulator(latency=0.4)
    tap = Tap(emu)
    run = make_run(bp, tmp_path, n)
    proc = spawn(run, emu, "--concurrency", "8")
    wait_for_results(run, 8, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    receipt = json.loads(out)
    assert receipt["stopped"] == "interrupted" and receipt["abandoned_in_flight"] == 0
    assert receipt["next"] == command("direct", Path(run))
    assert "interrupted" in err and f"resume with `{command('direct')}" in err
    # Everything the server answered was recorded: nothing sent is lost, nothing more was sent.
    answered = tap.successes()
    assert set(answered) == succeeded_ids(run) and receipt["counts"]["succeeded"] == len(answered)
    assert receipt["counts"]["not_run"] == n - len(answered) > 0
    last = json.loads((run / "journal.jsonl").read_text().splitlines()[-1])
    assert last["reason"] == "interrupted"

    rerun = spawn(run, emu, "--concurrency", "16")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert max(tap.successes().values()) == 1 and len(tap.successes()) == n
