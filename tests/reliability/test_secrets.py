"""The API key never leaves the environment: not in any file under the run directories, not in receipts,
logs, reports or error messages — when the API rejects it (401 on every request) and when a run succeeds.

Counts: 2 tests; 14 command runs with a recognisable fake key — against an API that answers 401
authentication_error to everything (run --mode batch, run --mode direct, submit, direct, plan --count-tokens,
batches) and against a working one (run --mode batch, run --mode direct, status, fetch, retry, merge, report,
batches). Every file under the working directory (run directories, emulator spool, request log) and every
stdout and stderr is scanned for the key and for its distinctive middle part.
"""

from __future__ import annotations

from pathlib import Path

from reliability.harness import clean_env, cli, write_items, write_tiny_template

KEY = "sk-ant-FAKE-SECRET-1234567890"
NEEDLES = (KEY.encode(), b"FAKE-SECRET", b"1234567890")


def scan(root: Path, outputs: list[str]) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in NEEDLES:
                assert needle not in data, f"{needle!r} found in {path.relative_to(root)}"
    for text in outputs:
        for needle in NEEDLES:
            assert needle.decode() not in text, f"{needle!r} found in output:\n{text[-2000:]}"


def test_key_rejected_everywhere_is_never_echoed(emulator, tmp_path):
    from batchpilot.emulator.http.wire import Response

    emu = emulator(log_path=str(tmp_path / "emu.log"))

    def refuse(request, request_id):
        return Response.json({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                              "request_id": request_id}, status=401)

    emu.app.handle = refuse
    write_items(tmp_path / "items.jsonl", 3)
    tpl = write_tiny_template(tmp_path)
    env = clean_env(emu.base_url, KEY)
    outputs = []
    for args in (("run", "-t", tpl, "-i", "items.jsonl", "--mode", "batch", "--run", "b"),
                 ("run", "-t", tpl, "-i", "items.jsonl", "--mode", "direct", "--run", "d"),
                 ("submit", "b"), ("direct", "d"),
                 ("plan", "-t", tpl, "-i", "items.jsonl", "--count-tokens"), ("batches",)):
        done = cli(tmp_path, env, *args)
        outputs += [done.stdout, done.stderr]
        assert done.returncode == 1, (args, done.returncode, done.stderr[-1500:])
        assert "Error: " in done.stderr and "Hint: " in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert Path(tmp_path / "b" / "run.json").exists() and Path(tmp_path / "d" / "run.json").exists()
    scan(tmp_path, outputs)


def test_key_used_by_a_successful_run_is_never_written(emulator, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule

    emu = emulator(log_path=str(tmp_path / "emu.log"), data_dir=str(tmp_path / "spool"),
                   faults=[FaultRule("overloaded", 0.3), FaultRule("rate_limit", 0.2)])
    write_items(tmp_path / "items.jsonl", 4)
    tpl = write_tiny_template(tmp_path)
    env = clean_env(emu.base_url, KEY)
    outputs = []
    for args in (("run", "-t", tpl, "-i", "items.jsonl", "--mode", "batch", "--run", "b", "--max-rounds", "1"),
                 ("run", "-t", tpl, "-i", "items.jsonl", "--mode", "direct", "--run", "d"),
                 ("status", "b"), ("fetch", "b"), ("retry", "b"), ("merge", "b"), ("report", "b"), ("report", "d"),
                 ("batches", "--limit", "5")):
        done = cli(tmp_path, env, *args)
        outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, (args, done.stderr[-1500:])
    assert (tmp_path / "b" / "report.html").exists() and (tmp_path / "d" / "merged.jsonl").exists()
    scan(tmp_path, outputs)
