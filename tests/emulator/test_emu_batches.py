"""Batch create-time validation, the processing queue, and the lifecycle on the emulated clock."""

from __future__ import annotations

import json

import pytest
from emulator.emu_helpers import admin, params, raw


def create(emu, requests) -> tuple[int, dict]:
    status, _, body = raw(emu).json("POST", "/v1/messages/batches", {"requests": requests})
    return status, body


def one(custom_id="a", p=None) -> dict:
    return {"custom_id": custom_id, "params": p if p is not None else params()}


@pytest.mark.parametrize("requests, fragment", [
    ([], "at least 1 item"),
    ([one("a" * 65)], "at most 64 characters"),
    ([one("has space")], "should match pattern"),
    ([one("")], "at least 1 character"),
    ([one(7)], "valid string"),
    ([one("dup"), one("dup")], "duplicate custom_id"),
    ([{"custom_id": "a"}], "requests.0.params: Field required"),
    ([{"params": params()}], "requests.0.custom_id: Field required"),
    ([one("a", p=[1])], "requests.0.params: Input should be a valid dictionary"),
    (["not an object"], "requests.0: Input should be a valid dictionary"),
])
def test_create_rejects_bad_requests_with_400(emulator, requests, fragment):
    status, body = create(emulator, requests)
    assert status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and fragment in body["error"]["message"]
    assert body["request_id"].startswith("req_")


def test_create_rejects_more_than_100000_requests(emulator):
    requests = [{"custom_id": f"r{i}", "params": {}} for i in range(100_001)]
    status, body = create(emulator, requests)
    assert status == 400 and "at most 100000" in body["error"]["message"]


def test_a_100000_request_batch_ends_and_streams(make_emulator):
    emu = make_emulator(batch_speed=1e9)
    requests = [{"custom_id": f"r{i}", "params": params(f"item {i}", max_tokens=8)} for i in range(100_000)]
    status, batch = create(emu, requests)
    assert status == 200 and batch["request_counts"]["processing"] == 100_000
    status, _, batch = raw(emu).json("GET", f"/v1/messages/batches/{batch['id']}")
    assert batch["processing_status"] == "ended" and batch["request_counts"]["succeeded"] == 100_000
    status, _, body = raw(emu).call("GET", f"/v1/messages/batches/{batch['id']}/results")
    assert body.count(b"\n") == 100_000 and b"\r" not in body


def test_processing_queue_limit_is_a_429_at_create(make_emulator):
    emu = make_emulator(batch_queue_limit=5, batch_speed=0.001)
    assert create(emu, [one(f"r{i}") for i in range(4)])[0] == 200
    status, body = create(emu, [one(f"s{i}") for i in range(2)])
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    assert create(emu, [one("t")])[0] == 200


def test_time_scale_lets_a_day_pass_and_expire_the_rest(make_emulator):
    emu = make_emulator(time_scale=86_400.0, batch_speed=1 / 3600)  # one request per emulated hour
    status, batch = create(emu, [one(f"r{i}") for i in range(30)])
    path = f"/v1/messages/batches/{batch['id']}"
    admin(emu, "advance", {"seconds": 86_400})
    status, _, ended = raw(emu).json("GET", path)
    assert ended["processing_status"] == "ended" and ended["ended_at"] == ended["expires_at"]
    counts = ended["request_counts"]
    assert counts["processing"] == 0 and counts["succeeded"] + counts["expired"] == 30
    assert 23 <= counts["succeeded"] <= 25  # ~24 done in 24 emulated hours
    _, _, body = raw(emu).call("GET", path + "/results")
    kinds = [json.loads(line)["result"]["type"] for line in body.splitlines()]
    assert kinds.count("expired") == counts["expired"] and kinds.count("succeeded") == counts["succeeded"]


def test_counts_move_only_at_the_end_unless_progressive(make_emulator):
    for progressive, expect_progress in ((False, False), (True, True)):
        emu = make_emulator(batch_speed=1.0, progressive_counts=progressive)
        status, batch = create(emu, [one(f"r{i}") for i in range(10)])
        admin(emu, "advance", {"seconds": 4.5})
        _, _, mid = raw(emu).json("GET", f"/v1/messages/batches/{batch['id']}")
        assert mid["processing_status"] == "in_progress"
        assert (mid["request_counts"]["succeeded"] > 0) is expect_progress
        assert sum(mid["request_counts"].values()) == 10


def test_admin_expire_and_stats(make_emulator):
    emu = make_emulator(batch_speed=1.0)
    _, batch = create(emu, [one(f"r{i}") for i in range(5)])
    admin(emu, "advance", {"seconds": 2.5})
    ended = admin(emu, f"batches/{batch['id']}/expire")
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"]["succeeded"] == 2 and ended["request_counts"]["expired"] == 3
    status, _, stats = raw(emu).json("GET", "/_emulator/stats")
    assert stats["batches"] == {"total": 1, "ended": 1} and stats["internal_errors"] == 0
    assert admin(emu, "reset") == {"reset": True}
    assert raw(emu).json("GET", "/v1/messages/batches")[2]["data"] == []


def test_not_found_just_after_create(make_emulator):
    emu = make_emulator(not_found_after_create=0.3)
    _, batch = create(emu, [one()])
    path = f"/v1/messages/batches/{batch['id']}"
    status, _, body = raw(emu).json("GET", path)
    assert status == 404 and body["error"]["type"] == "not_found_error"
    import time

    time.sleep(0.35)
    assert raw(emu).json("GET", path)[0] == 200
