"""The per-model facts table (core/models.py) and what follows from it: each row cites its docs page and
keeps the table's rules; a `tool` template on a model that refuses forced tool use sends no forced tool;
the emulator answers forced tool use on those models with the API's 400."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anthropic
import pytest

from batchpilot.core.models import MODELS, Tier, cost_usd, prices_for
from batchpilot.core.paths import TEMPLATES_DIR

REFUSING = sorted(m.id for m in MODELS.values() if not m.forced_tool)


@pytest.mark.parametrize("model", sorted(MODELS.values(), key=lambda m: m.id), ids=lambda m: m.id)
def test_every_row_cites_its_docs_page_and_keeps_the_tables_rules(model):
    assert model.source.startswith("https://platform.claude.com/docs/en/"), model.source
    assert model.input > 0 and model.output > model.input  # output always costs more than input
    assert (model.write_5m, model.write_1h) == (1.25, 2.0)  # the pricing page's multipliers, by TTL
    assert 0 < model.read_multiplier <= 0.1
    assert model.min_cache_tokens in (512, 1024, 2048, 4096)
    assert model.max_output in (64_000, 128_000)
    assert model.batch_max_output is None or model.batch_max_output >= model.max_output
    assert model.tier in ("haiku", "sonnet", "opus")
    if model.long_prompt is not None:
        assert model.long_prompt.threshold > 0
        assert model.long_prompt.input > model.input and model.long_prompt.output > model.output
    assert set(model.refused_thinking) <= {"enabled", "disabled"}


def test_the_figures_the_docs_corrected():
    assert MODELS["claude-sonnet-5-5"].read_multiplier == 0.1  # $0.20 on $2, not 0.05
    assert MODELS["claude-opus-5-5"].read_multiplier == 0.05  # $0.20 on $4
    assert MODELS["claude-opus-4-8"].min_cache_tokens == 1024  # not 4,096
    haiku = MODELS["claude-haiku-5-5"]
    assert haiku.max_output == 128_000 and haiku.long_prompt == Tier(100_000, 0.50, 2.50)
    assert REFUSING == ["claude-fable-5-1", "claude-opus-5-5", "claude-sonnet-5-5"]


def test_a_long_prompt_is_billed_at_the_higher_tier_on_every_token():
    prices = prices_for("claude-haiku-5-5")
    short = cost_usd(prices, {"input_tokens": 100_000, "output_tokens": 1000}, batch=False)
    long = cost_usd(prices, {"input_tokens": 60_000, "cache_read_input_tokens": 40_001, "output_tokens": 1000}, batch=False)
    assert short == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert long == pytest.approx((60_000 * 0.50 + 40_001 * 0.05 + 1000 * 2.50) / 1e6)


def tool_template(tmp: Path) -> Path:
    target = tmp / "review-tool"
    shutil.copytree(TEMPLATES_DIR / "code-review", target)
    meta = json.loads((target / "template.json").read_text())
    (target / "template.json").write_text(json.dumps({**meta, "output_style": "tool"}))
    return target


def test_a_tool_template_on_a_model_that_refuses_forced_tools_sends_none(bp, tmp_path):
    Path("a.py").write_text("def f(x):\n    return x / 0\n")
    template = tool_template(tmp_path)
    done = bp("run", "--template", template, "--items", "a.py", "--model", "claude-sonnet-5-5", "--mode", "direct",
              "--emulate", "--run", "r55")
    assert done.code == 0, done.stderr
    assert {k: n for k, n in done.receipt["counts"].items() if n} == {"ok": 1}, done.receipt
    sent = [json.loads(line)["params"] for line in Path("r55/requests.jsonl").read_text().splitlines()]
    assert sent and all("tool_choice" not in p for p in sent)
    assert all(p["output_config"]["format"]["type"] == "json_schema" for p in sent)
    assert json.loads(Path("r55/run.json").read_text())["output_style"] == "json_schema"
    kept = bp("prepare", "--template", template, "--items", "a.py", "--model", "claude-sonnet-5", "--run", "r5")
    assert kept.code == 0, kept.stderr
    (line,) = Path("r5/requests.jsonl").read_text().splitlines()
    assert json.loads(line)["params"]["tool_choice"] == {"type": "tool", "name": "emit_result"}


@pytest.mark.parametrize("model", REFUSING + ["claude-sonnet-5"])
def test_the_emulator_answers_forced_tool_use_with_400_on_the_models_that_refuse_it(emulator, model):
    emu = emulator()
    client = anthropic.Anthropic(api_key="x", base_url=emu.base_url, max_retries=0)
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "emit_result", "input_schema": {"type": "object"}}]}
    for choice in ({"type": "tool", "name": "emit_result"}, {"type": "any"}):
        if model in REFUSING:
            with pytest.raises(anthropic.BadRequestError) as err:
                client.messages.create(**body, tool_choice=choice)
            assert err.value.status_code == 400 and "tool_choice" in str(err.value)
        else:
            assert client.messages.create(**body, tool_choice=choice).stop_reason == "tool_use"
    assert client.messages.create(**body, tool_choice={"type": "auto"}).content


def _ttls(run: str) -> set:
    return {(json.loads(line)["params"]["system"][0].get("cache_control") or {}).get("ttl")
            for line in Path(run, "requests.jsonl").read_text().splitlines()}


def test_batch_caching_follows_the_jobs_size_and_plan_prices_what_prepare_sends(bp):
    """One request has nothing to read back (no cache); a small batch is processed within minutes (5-minute
    cache, cheaper to write); a large one outlives 5-minute entries (1-hour cache)."""
    src = Path("src")
    src.mkdir()
    for i in range(400):
        (src / f"m{i:03d}.py").write_text(f"def f{i}(x):\n    return x / {i}\n")
    for items, count, ttl in (("src/m000.py", 1, None), ("src/m00*.py", 10, "5m"), ("src/*.py", 400, "1h")):
        run = f"r{count}"
        receipt = bp("prepare", "--template", "code-review", "--items", items, "--run", run)
        assert receipt.code == 0, receipt.stderr
        assert receipt.receipt["cache"]["ttl"] == (ttl or "none"), receipt.receipt["cache"]
        assert f"{count} requests" in receipt.receipt["cache"]["why"]
        assert json.loads(Path(run, "run.json").read_text())["cache"] == receipt.receipt["cache"]
        assert _ttls(run) == {ttl}  # every request carries the choice, not the one made before the count
        planned = bp("plan", "--template", "code-review", "--items", items).receipt
        assert planned["cache"]["batch_choice"] == (ttl or "none")
        assert planned["cache"]["batch_requests"] == receipt.receipt["cache"]
        assert planned["modes"]["batch_cached"]["cache"] == (ttl or "none")
        costs = planned["cache"]["batch_prefix_cost"]
        assert min(costs, key=costs.get) == (ttl or "none")
    forced = bp("prepare", "--template", "code-review", "--items", "src/m000.py", "--run", "forced", "--cache", "1h")
    assert _ttls("forced") == {"1h"} and forced.receipt["cache"]["why"] == "--cache 1h"


def test_a_prepared_run_typed_again_states_the_cache_its_requests_carry(bp):
    """The same prepare, or a run resuming it, finds the run unchanged: its receipt says the choice made for
    the job's size (run.json's), not the large-batch assumption made before the items were counted."""
    for i in range(3):
        Path(f"m{i}.py").write_text(f"def f{i}(x):\n    return x / {i}\n")
    args = ("--template", "code-review", "--items", "*.py", "--run", "r")
    first = bp("prepare", *args).receipt["cache"]
    assert first["ttl"] == "5m" and _ttls("r") == {"5m"}
    again = bp("prepare", *args).receipt
    assert again["unchanged"] is True and again["cache"] == first
    resumed = bp("run", *args, "--mode", "batch", "--emulate")
    assert resumed.code == 0, resumed.stderr
    assert resumed.receipt["resumed"] is True and resumed.receipt["cache"] == first


def test_the_cache_choice_is_stated_and_a_flag_overrides_it(bp):
    Path("a.py").write_text("def f(x):\n    return x / 0\n")
    Path("b.py").write_text("def g(x):\n    return x / 1\n")
    auto = bp("prepare", "--template", "code-review", "--items", "*.py", "--run", "auto")
    assert auto.code == 0, auto.stderr
    assert auto.receipt["cache"]["ttl"] == "5m" and "5-minute" in auto.receipt["cache"]["why"]
    none = bp("prepare", "--template", "code-review", "--items", "a.py", "--run", "none", "--cache", "none")
    assert none.receipt["cache"] == {"ttl": "none", "why": "--cache none"}
    params = json.loads(Path("none/requests.jsonl").read_text())["params"]
    assert "cache_control" not in params["system"][0]
    assert json.loads(Path("none/run.json").read_text())["cache"]["ttl"] == "none"
    five = bp("prepare", "--template", "code-review", "--items", "a.py", "--run", "five", "--cache", "5m")
    assert json.loads(Path("five/requests.jsonl").read_text())["params"]["system"][0]["cache_control"]["ttl"] == "5m"
    planned = bp("plan", "--template", "code-review", "--items", "a.py", "--cache", "none").receipt
    assert planned["tokens"]["shared_prefix"] == 0  # plan prices what the requests will carry
    # and says why they carry no cache: the flag, not instructions too short to cache (code-review's are not)
    assert planned["cache"]["why"].startswith("--cache none") and "minimum" not in json.dumps(planned["cache"])
    assert all(planned["modes"][m]["note"].startswith("--cache none") for m in ("direct_cached", "batch_cached"))
