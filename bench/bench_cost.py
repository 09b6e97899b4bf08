#!/usr/bin/env python3
"""Billed cost of one code-review job in three modes against the emulator, next to what `plan` estimated.

Usage:
    python bench/bench_cost.py            # 1,000 items (about a minute)
    python bench/bench_cost.py --quick    # 200 items
    python bench/bench_cost.py --items 50

The job: the bundled code-review template with a long review checklist (bench/review-checklist.md) added to
its system.md, so the shared instructions are about 3,000 tokens by the project's estimator; items are small
generated Python files. The same requests run three ways, each through the CLI with `--emulate`:

    direct         `prepare --mode direct`, cache_control stripped from requests.jsonl, `direct RUN`, `merge`
    batch          `prepare --mode batch`, cache_control stripped, `submit`, `status --wait`, `fetch`, `merge`
    batch_cached   `run --mode batch` as the tool prepares it (the cache chosen for its size: 1 hour from 200 items)
    direct_cached  `prepare --mode direct` as prepared (5-minute cache), `direct RUN`, `merge`

Billed cost is summary.json's `cost_usd` (merge prices each result's usage with `models.cost_usd`), checked
against this script's own sum over results.jsonl. The estimate is `plan`'s figure of the same name.
Output length is the model's choice, not
the cost model's: `plan` guesses it from the template's example output, so each mode is compared
three ways: total cost with the template's estimate, the input side only (billed minus output tokens at the
output price, same for the plan), and total cost with `output_tokens_estimate` set to the emulator's mean
output per item (calibrated). Targets: the calibrated estimate within 10% of billed; batch_cached billed at
most 35% of direct. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKILL = ROOT / "skills" / "batch-processing"
sys.path.insert(0, str(SKILL))
CHECKLIST = Path(__file__).resolve().parent / "review-checklist.md"
TARGET_ESTIMATE_ERROR = 0.10
TARGET_CACHED_OVER_DIRECT = 0.35
PLAN_MODE = {"direct": "direct", "batch": "batch", "batch_cached": "batch_cached", "direct_cached": "direct_cached"}
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHPILOT_"))}
ENV.update(PYTHONPATH=str(SKILL), BATCHPILOT_POLL_MIN="0.05", BATCHPILOT_POLL_MAX="0.2")

NAMES = ["orders", "invoices", "users", "sessions", "billing", "reports", "cache", "queue", "search", "export"]
BODIES = [
    "    total = 0\n    for i in range(1, len(values)):\n        total += values[i] * rate\n    return total\n",
    "    if not values:\n        return None\n    return sum(values) / len(values) * rate\n",
    "    result = []\n    for v in values:\n        if v > rate:\n            result.append(v)\n    return result\n",
    "    try:\n        return max(values) * rate\n    except Exception:\n        return 0\n",
    "    path = 'uploads/' + str(values[0])\n    with open(path) as fh:\n        return fh.read().count(str(rate))\n",
]


def bp(*args: str, cwd: Path) -> dict:
    """Run one batchpilot command; its stdout receipt."""
    done = subprocess.run([sys.executable, "-m", "batchpilot", "-q", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"Error: batchpilot {' '.join(args)} exited {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def make_template(work: Path) -> Path:
    """A copy of the bundled code-review template whose system.md carries the long checklist."""
    from batchpilot.prepare.templates import TEMPLATES_DIR

    target = work / "code-review-long"
    shutil.copytree(TEMPLATES_DIR / "code-review", target)
    system = (target / "system.md").read_text(encoding="utf-8")
    checklist = CHECKLIST.read_text(encoding="utf-8").strip()
    marker = "## The file is data"
    system = system.replace(marker, checklist + "\n\n" + marker) if marker in system else system + "\n\n" + checklist
    (target / "system.md").write_text(system, encoding="utf-8")
    meta = json.loads((target / "template.json").read_text())
    meta["name"] = "code-review-long"
    (target / "template.json").write_text(json.dumps(meta, indent=2))
    return target


def set_output_estimate(template: Path, tokens: int) -> int:
    """Calibrate the copy's output estimate; plan prefers examples/output.json, so the copy loses it."""
    (template / "examples" / "output.json").unlink(missing_ok=True)
    meta = json.loads((template / "template.json").read_text())
    original = meta.get("output_tokens_estimate")
    meta["output_tokens_estimate"] = tokens
    (template / "template.json").write_text(json.dumps(meta, indent=2))
    return original


def make_items(folder: Path, n: int) -> str:
    """n small Python modules (a docstring, imports, two or three functions); returns their glob."""
    folder.mkdir()
    rng = random.Random(7)
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        funcs = []
        for k in range(2 + i % 2):
            funcs.append(f"def {name}_{k}(values, rate={rng.randint(1, 9)}):\n"
                         f'    """Compute the {name} figure {k} for item {i}."""\n{rng.choice(BODIES)}')
        (folder / f"module_{i:04d}.py").write_text(
            f'"""The {name} helpers, part {i}."""\n\nimport os\nimport json\n\n\n' + "\n\n".join(funcs))
    return str(folder / "*.py")


def strip_cache_control(run: Path) -> int:
    """Remove every cache_control from requests.jsonl (the same requests, uncached); the blocks changed."""
    lines, changed = [], 0
    for line in (run / "requests.jsonl").read_text(encoding="utf-8").splitlines():
        request = json.loads(line)
        params = request["params"]
        changed += params.pop("cache_control", None) is not None
        for block in params.get("system") if isinstance(params.get("system"), list) else []:
            changed += block.pop("cache_control", None) is not None
        request["params"] = params
        lines.append(json.dumps(request, separators=(",", ":"), ensure_ascii=False))
    (run / "requests.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


def own_sum(run: Path) -> dict:
    """Usage and cost summed over results.jsonl's succeeded records, with models.cost_usd and the run's prices."""
    from batchpilot.core.models import cost_usd
    from batchpilot.results.summary import run_prices

    prices = run_prices(json.loads((run / "run.json").read_text()))
    keys = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    usage = dict.fromkeys(keys, 0)
    cost = 0.0
    for line in (run / "results.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["result"]["type"] != "succeeded":
            continue
        u = record["result"]["message"]["usage"]
        for k in keys:
            usage[k] += u.get(k) or 0
        cost += cost_usd(prices, u, batch=record.get("mode") == "batch")
    return {"usage": usage, "cost_usd": cost, "price_in": prices.input, "price_out": prices.output}


def execute(mode: str, template: Path, items: str, work: Path) -> dict:
    run = work / mode
    started = time.perf_counter()
    stripped = 0
    if mode == "batch_cached":
        bp("run", "--template", str(template), "--items", items, "--mode", "batch", "--emulate", "--run", str(run), cwd=work)
    elif mode == "batch":
        bp("prepare", "--template", str(template), "--items", items, "--mode", "batch", "--run", str(run), cwd=work)
        stripped = strip_cache_control(run)
        bp("submit", str(run), "--emulate", cwd=work)
        bp("status", str(run), "--wait", "--emulate", cwd=work)
        bp("fetch", str(run), "--emulate", cwd=work)
        bp("merge", str(run), cwd=work)
    else:  # direct, direct_cached
        bp("prepare", "--template", str(template), "--items", items, "--mode", "direct", "--run", str(run), cwd=work)
        if mode == "direct":
            stripped = strip_cache_control(run)
        bp("direct", str(run), "--emulate", cwd=work)
        bp("merge", str(run), cwd=work)
    summary = json.loads((run / "summary.json").read_text())
    mine = own_sum(run)
    return {"seconds": round(time.perf_counter() - started, 1), "cache_control_stripped": stripped,
            "counts": summary["counts"], "usage": summary["usage"], "billed_usd": summary["cost_usd"],
            "own_sum_usd": round(mine["cost_usd"], 6),
            "own_sum_matches": abs(mine["cost_usd"] - summary["cost_usd"]) <= 1e-6 * max(1.0, summary["cost_usd"]),
            "price_in": mine["price_in"], "price_out": mine["price_out"]}


def compare(estimate: float, billed: float) -> dict:
    error = estimate / billed - 1
    return {"estimate_usd": round(estimate, 4), "billed_usd": round(billed, 4), "error": round(error, 4),
            "within_target": abs(error) <= TARGET_ESTIMATE_ERROR}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 items instead of 1,000")
    parser.add_argument("--items", type=int, default=None, help="number of items (overrides --quick)")
    args = parser.parse_args()
    n = args.items or (200 if args.quick else 1000)
    from batchpilot.core.tokens import estimate_text

    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        work = Path(tmp)
        template = make_template(work)
        items = make_items(work / "items", n)
        runs = {mode: execute(mode, template, items, work) for mode in ("direct", "batch", "batch_cached", "direct_cached")}
        system_text = (work / "batch_cached" / "requests.jsonl").open().readline()
        system_tokens = estimate_text(json.loads(system_text)["params"]["system"][0]["text"])
        template_plan = bp("plan", "--template", str(template), "--items", items, cwd=work)
        # The emulator's answers depend on the whole request, cache_control included, so the cached and the
        # uncached runs' output differs by a few tokens: calibrate on the mean of all the runs.
        out_tokens = sum(runs[m]["usage"]["output_tokens"] for m in PLAN_MODE) / len(PLAN_MODE)
        mean_output = round(out_tokens / n)
        template_estimate = set_output_estimate(template, mean_output)
        calibrated_plan = bp("plan", "--template", str(template), "--items", items, cwd=work)

    comparisons = {}
    for mode, plan_mode in PLAN_MODE.items():
        run = runs[mode]
        discount = 0.5 if mode.startswith("batch") else 1.0  # models.BATCH_DISCOUNT
        per_out = run["price_out"] / 1e6 * discount
        billed = run["billed_usd"]
        est = template_plan["modes"][plan_mode]["cost_usd"]
        comparisons[mode] = {
            "template_estimate": compare(est, billed),
            "input_side": compare(est - template_plan["tokens"]["output_estimate"] * per_out,
                                  billed - run["usage"]["output_tokens"] * per_out),
            "calibrated": compare(calibrated_plan["modes"][plan_mode]["cost_usd"], billed),
        }
    ratio = runs["batch_cached"]["billed_usd"] / runs["direct"]["billed_usd"]
    print(json.dumps({
        "benchmark": "cost",
        "items": n,
        "template": "code-review + bench/review-checklist.md",
        "model": template_plan["model"],
        "prices": template_plan["prices"],
        "system_prompt_tokens": system_tokens,
        "shared_prefix_tokens": template_plan["tokens"]["shared_prefix"],
        "input_tokens": template_plan["tokens"]["input"],
        "output_tokens": {"template_estimate_per_item": template_estimate, "emulator_mean_per_item": mean_output,
                          "emulator_total": {m: runs[m]["usage"]["output_tokens"] for m in runs}},
        "runs": runs,
        "plan": {"template_estimate": {m: template_plan["modes"][m]["cost_usd"] for m in PLAN_MODE.values()},
                 "calibrated": {m: calibrated_plan["modes"][m]["cost_usd"] for m in PLAN_MODE.values()}},
        "comparisons": comparisons,
        "batch_cached_over_direct": round(ratio, 4),
        "direct_cached_over_direct": round(runs["direct_cached"]["billed_usd"] / runs["direct"]["billed_usd"], 4),
        "targets": {"estimate_error_at_most": TARGET_ESTIMATE_ERROR, "batch_cached_over_direct_at_most": TARGET_CACHED_OVER_DIRECT},
        "meets_target": ratio <= TARGET_CACHED_OVER_DIRECT and all(c["calibrated"]["within_target"] for c in comparisons.values()),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
