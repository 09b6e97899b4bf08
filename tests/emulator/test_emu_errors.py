"""Bad input to the emulator gets an API-shaped 4xx, never a 500 from the emulator's own code."""

from __future__ import annotations

import pytest
from emulator.emu_helpers import params, raw

M = "/v1/messages"
B = "/v1/messages/batches"

CASES = [
    ("POST", M, b"not json", 400, "invalid_request_error"),
    ("POST", M, b"", 400, "invalid_request_error"),
    ("POST", M, b"[1, 2]", 400, "invalid_request_error"),
    ("POST", M, b'{"model": 5, "max_tokens": 1, "messages": []}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": "ten", "messages": []}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": "hi"}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "bot", "content": "x"}]}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": [5]}]}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "tools": {}}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "claude-haiku-4-5", "max_tokens": 99999999, "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_request_error"),
    ("POST", M, b'{"model": "no-such-model", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}', 404, "not_found_error"),
    ("POST", M, b"\xff\xfe garbage", 400, "invalid_request_error"),
    ("POST", M + "/count_tokens", b'{"messages": []}', 400, "invalid_request_error"),
    ("POST", B, b"{", 400, "invalid_request_error"),
    ("POST", B, b'{"requests": "all of them"}', 400, "invalid_request_error"),
    ("POST", B, b'{"nothing": 1}', 400, "invalid_request_error"),
    ("POST", B, b'{"requests": [] } trailing', 400, "invalid_request_error"),
    ("POST", B, b"\xff", 400, "invalid_request_error"),
    ("GET", B + "/msgbatch_missing", None, 404, "not_found_error"),
    ("POST", B + "/msgbatch_missing/cancel", None, 404, "not_found_error"),
    ("GET", B + "?after_id=nope", None, 400, "invalid_request_error"),
    ("GET", "/v1/nowhere", None, 404, "not_found_error"),
    ("GET", "/", None, 404, "not_found_error"),
    ("GET", M, None, 405, "invalid_request_error"),
    ("PUT", B, b"{}", 405, "invalid_request_error"),
    ("PATCH", B + "/x/results", None, 405, "invalid_request_error"),
    ("POST", "/_emulator/advance", b"[]", 400, "invalid_request_error"),
    ("POST", "/_emulator/advance", b'{"seconds": 1e400}', 400, "invalid_request_error"),
    ("POST", "/_emulator/advance", b'{"seconds": -5}', 400, "invalid_request_error"),
    ("GET", "/_emulator/nothing", None, 405, "invalid_request_error"),
    ("POST", "/_emulator/batches/nope/finish", None, 404, "not_found_error"),
]


@pytest.mark.parametrize("method, path, body, status, error_type", CASES)
def test_bad_input_gets_an_api_shaped_error(emulator, method, path, body, status, error_type):
    got, headers, payload = raw(emulator).json(method, path, raw=body)
    assert got == status, payload
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    assert payload["request_id"] == headers["request-id"]
    assert "Traceback" not in payload["error"]["message"]


def test_system_role_messages_and_unknown_keys_are_tolerated(emulator):
    body = params("prompt", thinking={"type": "adaptive"}, context_management={"edits": []},
                  metadata={"user_id": "{}"}, output_config={"effort": "high"})
    body["messages"].append({"role": "system", "content": "agent list"})
    status, _, message = raw(emulator).json("POST", "/v1/messages?beta=true", body)
    assert status == 200 and message["content"][0]["type"] == "text"


def test_sampling_params_are_refused_under_the_newest_version(emulator):
    headers = {"x-api-key": "k", "anthropic-version": "2026-10-21", "content-type": "application/json"}
    status, _, body = raw(emulator).json("POST", M, params(temperature=0.5), headers=headers)
    assert status == 400 and "temperature" in body["error"]["message"]
