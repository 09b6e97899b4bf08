"""Wire-level behaviour: exact bytes, statuses, headers and error bodies, checked without an SDK in between
(except where the point is what the SDK does with them)."""

from __future__ import annotations

import json

import anthropic
import httpx2 as httpx
import pytest
from emulator.emu_helpers import HEADERS, admin, params, raw

from batchpilot.emulator.behaviour.faults import FaultRule


def ended_batch(emu, requests: list[dict]) -> str:
    status, _, batch = raw(emu).json("POST", "/v1/messages/batches", {"requests": requests})
    assert status == 200, batch
    admin(emu, f"batches/{batch['id']}/finish")
    return batch["id"]


def test_results_jsonl_is_clean_and_errored_lines_nest_the_error(emulator):
    batch_id = ended_batch(emulator, [
        {"custom_id": "a", "params": params("multi\nline\r\ntext")},
        {"custom_id": "b", "params": {"max_tokens": 10, "messages": [{"role": "user", "content": "no model"}]}},
        {"custom_id": "c", "params": params("streamed", stream=True)},
        {"custom_id": "d", "params": params("unknown", model="claude-nonexistent-9")},
    ])
    status, headers, body = raw(emulator).call("GET", f"/v1/messages/batches/{batch_id}/results?beta=true")
    assert status == 200 and headers["content-type"] == "application/x-jsonl"
    assert headers["request-id"].startswith("req_")
    assert b"\r" not in body and b"\n\n" not in body and body.endswith(b"\n")
    lines = [json.loads(line) for line in body.split(b"\n")[:-1]]
    assert sorted(line["custom_id"] for line in lines) == ["a", "b", "c", "d"]  # in any order, like the API
    errors = {line["custom_id"]: line["result"]["error"] for line in lines if line["result"]["type"] == "errored"}
    assert set(errors) == {"b", "c", "d"}
    for error in errors.values():
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
    assert errors["b"]["error"] == {"type": "invalid_request_error", "message": "model: Field required"}
    assert "stream" in errors["c"]["error"]["message"]
    assert errors["d"]["error"]["type"] == "not_found_error"


def test_results_url_follows_the_host_header(emulator):
    batch_id = ended_batch(emulator, [{"custom_id": "x", "params": params()}])
    port = emulator.base_url.rsplit(":", 1)[1]
    status, _, batch = raw(emulator).json("GET", f"/v1/messages/batches/{batch_id}",
                                          headers={**HEADERS, "host": f"localhost:{port}"})
    assert batch["results_url"] == f"http://localhost:{port}/v1/messages/batches/{batch_id}/results"


def test_oversized_batch_body_is_413(make_emulator):
    emu = make_emulator(max_batch_body_bytes=2000)
    big = {"requests": [{"custom_id": f"r{i}", "params": params("x" * 100)} for i in range(30)]}
    status, headers, body = raw(emu).json("POST", "/v1/messages/batches", big)
    assert status == 413 and body["error"]["type"] == "request_too_large" and headers["request-id"]
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.batches.create(requests=big["requests"])
    assert caught.value.status_code == 413
    status, _, _ = raw(emu).json("POST", "/v1/messages/batches", {"requests": big["requests"][:2]})
    assert status == 200


@pytest.mark.parametrize("limit, status", [(1, 200), (1000, 200), (0, 400), (1001, 400), ("abc", 400)])
def test_list_limit_edges(emulator, limit, status):
    ended_batch(emulator, [{"custom_id": "x", "params": params()}])
    got, _, body = raw(emulator).json("GET", f"/v1/messages/batches?limit={limit}")
    assert got == status, body
    if status == 200:
        assert 1 <= len(body["data"]) <= limit and body["first_id"] == body["data"][0]["id"]
    else:
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error" and body["request_id"]


def test_delete_before_end_is_refused_then_allowed(make_emulator):
    emu = make_emulator(batch_speed=0.001)
    status, _, batch = raw(emu).json("POST", "/v1/messages/batches", {"requests": [{"custom_id": "x", "params": params()}]})
    path = f"/v1/messages/batches/{batch['id']}"
    status, _, body = raw(emu).json("DELETE", path)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, _, body = raw(emu).json("GET", path + "/results")
    assert status == 400
    admin(emu, f"batches/{batch['id']}/finish")
    assert raw(emu).json("POST", path + "/cancel")[0] == 400  # ended: nothing left to cancel
    assert raw(emu).json("DELETE", path)[2] == {"id": batch["id"], "type": "message_batch_deleted"}
    assert raw(emu).json("GET", path)[0] == 404


def test_dropped_results_connection_makes_the_sdk_raise(make_emulator):
    emu = make_emulator(faults=[FaultRule(kind="drop_results", times=1)])
    batch_id = ended_batch(emu, [{"custom_id": f"r{i}", "params": params(str(i))} for i in range(400)])
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0, timeout=10)
    with pytest.raises((httpx.HTTPError, anthropic.APIError)):
        list(client.messages.batches.results(batch_id))
    assert len(list(client.messages.batches.results(batch_id))) == 400  # `times=1`: the retry succeeds
    assert emu.stats()["faults"]["drop_results"] == 1


def test_archived_batch_keeps_its_record_but_not_its_results(make_emulator):
    emu = make_emulator(time_scale=1.0)
    batch_id = ended_batch(emu, [{"custom_id": "x", "params": params()}])
    admin(emu, "advance", {"seconds": 29 * 86400 + 1})
    status, _, batch = raw(emu).json("GET", f"/v1/messages/batches/{batch_id}")
    assert status == 200 and batch["archived_at"] is not None and batch["processing_status"] == "ended"
    status, _, body = raw(emu).json("GET", f"/v1/messages/batches/{batch_id}/results")
    assert status == 404 and body["error"]["type"] == "not_found_error"


def test_head_root_auth_forms_and_prefixes(emulator):
    client = raw(emulator)
    status, headers, body = client.call("HEAD", "/", headers={})
    assert status == 200 and headers["request-id"]
    bearer = {"authorization": "Bearer t", "anthropic-version": "2026-10-21", "content-type": "application/json"}
    assert client.json("POST", "/v1/messages?beta=true", params(), headers=bearer)[0] == 200
    assert client.json("POST", "/prefix/v1/messages", params())[0] == 200
    status, _, body = client.json("POST", "/v1/messages", params(), headers={"anthropic-version": "2023-06-01"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, _, body = client.json("POST", "/v1/messages", params(), headers={"x-api-key": "k"})
    assert status == 400 and "anthropic-version" in body["error"]["message"]
    status, headers, _ = client.call("POST", "/v1/messages", params())
    assert {"anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-output-tokens-limit"} <= set(headers)


def test_request_log_records_every_request(make_emulator, tmp_path):
    log = tmp_path / "log.jsonl"
    emu = make_emulator(log_path=str(log))
    client = raw(emu)
    client.json("POST", "/v1/messages", params("logged"))
    status, _, batch = client.json("POST", "/v1/messages/batches", {"requests": [{"custom_id": "a", "params": params()},
                                                                                 {"custom_id": "b", "params": params()}]})
    client.json("GET", "/nowhere")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(l["method"], l["path"], l["status"]) for l in lines] == [
        ("POST", "/v1/messages", 200), ("POST", "/v1/messages/batches", 200), ("GET", "/nowhere", 404)]
    assert lines[0]["usage"]["input_tokens"] > 0 and lines[0]["usage"]["output_tokens"] > 0
    assert lines[1]["batch_id"] == batch["id"] and lines[1]["requests"] == 2
    assert all(set(l) >= {"time", "fault", "ms"} for l in lines)


def test_request_log_keys_messages_requests_by_content(make_emulator, tmp_path):
    from batchpilot.emulator.behaviour.faults import FaultRule
    from batchpilot.emulator.behaviour.responder import request_key

    log = tmp_path / "log.jsonl"
    emu = make_emulator(log_path=str(log), seed=5, faults=[FaultRule(kind="overloaded", times=1)])
    client = raw(emu)
    body = params("keyed")
    assert client.json("POST", "/v1/messages", body)[0] == 529  # a fault: the line is keyed all the same
    assert client.call("POST", "/v1/messages", {**body, "stream": True, "metadata": {"user_id": "u"}})[0] == 200
    client.json("POST", "/v1/messages", params("other"))
    client.json("POST", "/v1/messages", {**params("bad"), "max_tokens": -1})
    client.json("POST", "/v1/messages/batches", {"requests": [{"custom_id": "a", "params": body}]})
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    keys = [l.get("request_key") for l in lines]
    assert keys[0] == keys[1] == request_key(body, 5)  # stream and metadata do not change the key
    assert keys[2] not in (None, keys[0]) and lines[3]["status"] == 400 and keys[3]
    assert "request_key" not in lines[4]  # batch lines keep their shape
