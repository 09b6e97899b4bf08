"""The emulator counts tokens with its own tokenizer, so estimate-vs-billed is a measurement: its counts
differ from the client's estimate (core/tokens.py) by model family and by content type, and the estimate
of a mixed corpus stays within the stated error (tokens.ESTIMATE_ERROR) of what the emulator bills."""

from __future__ import annotations

import json

import anthropic
import pytest

from batchpilot.core.tokens import ESTIMATE_ERROR, estimate_input_tokens
from conftest import SAMPLES, SKILL_DIR

PROSE = (SKILL_DIR / "SKILL.md").read_text(encoding="utf-8")[:6000]
CODE = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(SAMPLES.rglob("*.py")))[:6000]
JSON = json.dumps(json.loads((SKILL_DIR / "templates" / "code-review" / "schema.json").read_text()), indent=2)[:6000]
CJK = ("批处理接口以一半的价格异步处理大量请求，结果通常在一小时内返回，最长二十四小时。"
       "每个请求都有自己的标识符，结果的顺序与提交的顺序无关。") * 40
CORPUS = {"prose": PROSE, "code": CODE, "json": JSON, "cjk": CJK}
OLDER, NEWER = "claude-haiku-4-5", "claude-sonnet-5-5"


def request(model: str, text: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


@pytest.fixture
def client(emulator):
    return anthropic.Anthropic(api_key="x", base_url=emulator().base_url, max_retries=0)


def counted(client, model: str, text: str) -> int:
    return client.messages.count_tokens(**request(model, text)).input_tokens


def test_the_emulators_counts_differ_from_the_estimate_by_family_and_content(client):
    ratios = {}
    for name, text in CORPUS.items():
        older, newer = counted(client, OLDER, text), counted(client, NEWER, text)
        assert 1.25 < newer / older < 1.35, name  # the newer tokenizer: about 30% more for the same text
        ratios[name] = older / estimate_input_tokens(request(OLDER, text))
    # characters / 4 is one rate for every text; the emulator's rate depends on what the text is
    assert max(ratios.values()) / min(ratios.values()) > 1.3, ratios
    assert ratios["code"] > ratios["prose"]  # symbol-dense text costs more per character


@pytest.mark.parametrize("model", [OLDER, NEWER])
def test_the_estimate_of_a_mixed_corpus_is_within_the_stated_error(client, model):
    estimate = sum(estimate_input_tokens(request(model, text)) for text in CORPUS.values())
    billed = sum(counted(client, model, text) for text in CORPUS.values())
    assert abs(estimate / billed - 1) <= ESTIMATE_ERROR, (estimate, billed)
    for name, text in CORPUS.items():  # each content type on its own is looser, but not wildly off
        one = estimate_input_tokens(request(model, text)) / counted(client, model, text)
        assert 0.5 < one < 1.6, (name, one)


def test_messages_bill_what_count_tokens_counts(client):
    body = {**request(NEWER, CODE), "max_tokens": 200}
    usage = client.messages.create(**body).usage
    assert usage.input_tokens == counted(client, NEWER, CODE) != estimate_input_tokens(body)
