#!/usr/bin/env python3
"""Estimate against bill for the six bundled templates on varied items, in batch and direct mode, against the
emulator's independent token count and answer lengths.

Usage:
    python bench/bench_estimates.py              # 1,000 items per template, pilot of 20
    python bench/bench_estimates.py --quick      # 200 items
    python bench/bench_estimates.py --items 30 --pilot 8
    python bench/bench_estimates.py --seed 1       # another draw of the items

For each template and mode, two runs through the CLI with `--emulate`, as a user types them:

    (a) template only   `plan` (its expected cost and printed range for the mode the run sends), then
                        `run --mode M` of the whole job: is the billed cost inside the printed range?
    (b) after a pilot   `run --mode M --pilot N`: the pilot's extrapolated whole-job cost (`whole_job`)
                        against what the whole job (pilot + rest) is then billed. Target: within 15%.

Billed cost is summary.json's `cost_usd`. Items are generated per template with a seeded RNG: Python files
of 1 to 60 functions (code-review, security-review), Markdown documents of 1 to 30 sections (doc-review),
prose of 2 to 150 sentences with a CJK paragraph in one item of ten (summarize, extract), and JSONL tickets
of 4 to 400 words (classify). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKILL = ROOT / "skills" / "batch-processing"
TEMPLATES = SKILL / "templates"
PILOT_ERROR = 0.15
MODES = ("batch", "direct")
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHPILOT_"))}
ENV.update(PYTHONPATH=str(SKILL), BATCHPILOT_POLL_MIN="0.05", BATCHPILOT_POLL_MAX="0.2")
VARS = {"classify": ["labels=billing,bug,feature-request,account-access,other"],
        "extract": [f"fields_schema={TEMPLATES / 'extract' / 'examples' / 'fields.schema.json'}"]}
WORDS = ("order invoice customer refund account login password shipping delay broken screen charge twice "
         "support ticket response update version error crash report feature request export import").split()
BODIES = ("    total = 0\n    for i in range(1, len(values)):\n        total += values[i] * rate\n    return total\n",
          "    if not values:\n        return None\n    return sum(values) / len(values) * rate\n",
          "    path = 'uploads/' + str(values[0])\n    with open(path) as fh:\n        return fh.read().count(str(rate))\n",
          "    try:\n        return {'max': max(values) * rate, 'n': len(values)}\n    except Exception:\n        return {}\n")
CJK = "批处理请求以一半的价格异步处理，结果通常在一小时内返回。客户反馈说发票金额重复扣款，需要尽快退款。"


def bp(*args: str, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "batchpilot", "-q", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"Error: batchpilot {' '.join(args)} exited {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def sentence(r: random.Random) -> str:
    return " ".join(r.choice(WORDS) for _ in range(r.randint(5, 18))).capitalize() + "."


def make_items(name: str, folder: Path, n: int, seed: int = 0) -> str:
    """Varied items for one template; the --items value. Seed 0 is the published table's."""
    folder.mkdir(parents=True)
    r = random.Random(name if not seed else f"{name}/{seed}")
    if name == "classify":
        with open(folder / "tickets.jsonl", "w", encoding="utf-8") as fh:
            for i in range(n):
                text = " ".join(r.choice(WORDS) for _ in range(int(r.lognormvariate(3.5, 1.0)) % 400 + 4))
                fh.write(json.dumps({"id": f"t{i:04d}", "text": text}) + "\n")
        return str(folder / "tickets.jsonl")
    for i in range(n):
        if name in ("code-review", "security-review"):
            parts = [f"def f{j}(values, rate):\n{r.choice(BODIES)}" for j in range(int(r.lognormvariate(1.8, 0.9)) % 60 + 1)]
            (folder / f"m{i:04d}.py").write_text("import os\n\n\n" + "\n\n".join(parts), encoding="utf-8")
        elif name == "doc-review":
            sections = [f"## Section {j}\n\n" + " ".join(sentence(r) for _ in range(r.randint(2, 8)))
                        + ("\n\n```sh\nbatchpilot run --items 'src/**/*.py'\n```" if r.random() < 0.3 else "")
                        for j in range(int(r.lognormvariate(1.5, 0.9)) % 30 + 1)]
            (folder / f"d{i:04d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(sections), encoding="utf-8")
        else:
            text = " ".join(sentence(r) for _ in range(int(r.lognormvariate(2.5, 1.0)) % 150 + 2))
            if i % 10 == 0:
                text += "\n\n" + CJK * r.randint(1, 6)
            (folder / f"t{i:04d}.txt").write_text(text, encoding="utf-8")
    return str(folder / ("*.py" if name in ("code-review", "security-review") else "*.md" if name == "doc-review" else "*.txt"))


def billed(run: Path) -> float:
    return float(json.loads((run / "summary.json").read_text())["cost_usd"])


def one(name: str, mode: str, items: str, work: Path, pilot: int) -> dict:
    extra = [w for v in VARS.get(name, []) for w in ("--var", v)]
    plan = bp("plan", "--template", name, "--items", items, *extra, cwd=work)
    key = f"{mode}_cached" if plan["tokens"]["shared_prefix"] else mode
    estimate = plan["modes"][key]
    pure = work / f"{name}-{mode}"
    bp("run", "--template", name, "--items", items, *extra, "--mode", mode, "--emulate", "--run", str(pure), cwd=work)
    piloted = work / f"{name}-{mode}-pilot"
    receipt = bp("run", "--template", name, "--items", items, *extra, "--mode", mode, "--emulate", "--run", str(piloted),
                 "--pilot", str(pilot), cwd=work)
    whole = receipt["pilot"]["whole_job"]
    low, high = estimate["cost_range_usd"]
    return {"template": name, "mode": mode, "plan_row": key, "output_source": plan["tokens"]["output_source"],
            "plan_expected_usd": estimate["cost_usd"], "plan_range_usd": [low, high], "billed_usd": billed(pure),
            "in_range": low <= billed(pure) <= high,
            "pilot_extrapolated_usd": whole["cost_usd"], "pilot_billed_usd": billed(piloted),
            "pilot_ratio": round(whole["cost_usd"] / billed(piloted), 4),
            "pilot_within_target": abs(whole["cost_usd"] / billed(piloted) - 1) <= PILOT_ERROR}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--pilot", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="another draw of the varied items (0: the published table's)")
    parser.add_argument("--templates", default="", help="comma-separated names (default: every bundled template)")
    args = parser.parse_args()
    names = [t for t in args.templates.split(",") if t] or sorted(
        p.name for p in TEMPLATES.iterdir() if (p / "template.json").is_file())
    n = 200 if args.quick else args.items
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimates-") as tmp:
        work = Path(tmp)
        for name in names:
            # Relative to the runs' working directory: an item's path is part of its request, so the temporary
            # folder's random name would otherwise make every run a different draw of the emulator's answers.
            items = os.path.relpath(make_items(name, work / "items" / name, n, args.seed), work)
            for mode in MODES:
                rows.append(one(name, mode, items, work, min(args.pilot, n)))
    print(json.dumps({"benchmark": "estimates", "items": n, "pilot": args.pilot, "seed": args.seed, "rows": rows,
                      "targets": {"pilot_error_at_most": PILOT_ERROR, "billed_in_plan_range": True},
                      "meets_target": all(r["in_range"] and r["pilot_within_target"] for r in rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
