"""Sharding at scale, against the emulator: the request-count and body-size limits, measured server-side."""

from __future__ import annotations

import json
from pathlib import Path

from test_batch_cli import api, creates, log_lines, prepare  # noqa: F401 - `api` is a fixture

PARAMS = '{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi %d"}]}'


def tiny_run(bp, n: int) -> Path:
    """A prepared run whose items and requests are replaced by n tiny ones (prepare itself is not under test)."""
    run = prepare(bp, 1)
    with open(run / "requests.jsonl", "w") as req, open(run / "items.jsonl", "w") as items:
        for i in range(n):
            req.write('{"custom_id":"t-%d","params":%s}\n' % (i, PARAMS % i))
            items.write('{"custom_id":"t-%d","source":"gen"}\n' % i)
    return run


def test_150k_items_make_two_batches_each_result_once(bp, api):
    emu = api(batch_speed=10_000_000)  # 150k requests end at once instead of in 150 s
    run = tiny_run(bp, 150_000)
    r = bp("submit", run)
    assert r.code == 0, r.stderr
    assert bp("status", run, "--wait").code == 0
    r = bp("fetch", run)
    assert r.code == 0, r.stderr
    assert r.receipt["counts"] == {"succeeded": 150_000} and r.receipt["missing"] == 0
    log = log_lines(emu.log_file)
    assert [(c["status"], c["requests"]) for c in creates(log)] == [(200, 100_000), (200, 50_000)]
    seen = set()
    with open(run / "results.jsonl", "rb") as fh:
        for line in fh:
            seen.add(line[15:line.index(b'"', 15)])
    assert len(seen) == 150_000


def test_body_limit_lowered_to_1mb_gives_shards_that_fit(bp, api, monkeypatch):
    emu = api(max_batch_body_bytes=1_000_000, batch_speed=10_000_000)
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_BYTES", "1000000")
    run = tiny_run(bp, 25_000)
    r = bp("submit", run)
    assert r.code == 0, r.stderr
    journal = [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]
    shards = next(e for e in journal if e["event"] == "round_planned")["shards"]
    assert len(shards) >= 3 and all(s["bytes"] <= 1_000_000 for s in shards)
    assert sum(s["requests"] for s in shards) == 25_000
    log = log_lines(emu.log_file)
    assert [c["status"] for c in creates(log)] == [200] * len(shards)  # every create fit: no 413
    assert [c["requests"] for c in creates(log)] == [s["requests"] for s in shards]


def test_a_request_larger_than_the_limit_is_named(bp, api, monkeypatch):
    api()
    monkeypatch.setenv("BATCHPILOT_MAX_BATCH_BYTES", "2000")
    run = prepare(bp, 2)
    r = bp("submit", run)
    assert r.code == 1
    assert "exceeds the batch body limit" in r.stderr and "item-0000" in r.stderr and "Hint:" in r.stderr
