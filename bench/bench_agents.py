#!/usr/bin/env python3
"""Orchestrator context per item in agents mode: this design against the naive one, at three item sizes.

Usage: python bench/bench_agents.py [--quick] [--items N]

"This design" counts what the orchestrating agent reads and writes per item: its share of a fanout/collect
receipt (the task line plus the receipt's fixed part spread over the wave), the Agent call it sends
(description, prompt pointer, model) and the one-line reply. "Naive" counts an orchestrator that reads each
item, pastes instructions + item + schema into the Agent prompt, and reads the full JSON answer back. Bytes,
not tokens (about 4 bytes a token for English and code). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "skills" / "batch-processing"))

from click.testing import CliRunner  # noqa: E402

from batchpilot.executors.agents import fanout_run  # noqa: E402
from batchpilot.cli.main import format_receipt  # noqa: E402
from batchpilot.cli.main import cli  # noqa: E402
from batchpilot.executors.prompts import REPLY_DONE  # noqa: E402

SIZES = (200, 2_000, 20_000)
ANSWER = {"summary": "Two problems: an unchecked index and a swallowed exception.", "findings": [
    {"file": "src/app.py", "line_start": 10 + i, "line_end": 12 + i, "severity": "medium", "category": "bug",
     "message": "The index is not checked against the list length, so an empty input raises IndexError.",
     "suggestion": "Return early when the list is empty.", "confidence": "high"} for i in range(4)]}


def measure(root: Path, n: int, size: int) -> dict:
    items = root / f"items-{size}.jsonl"
    with open(items, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"item-{i:05d}", "text": (f"line {i}: " + "x = compute(y) + 1\n" * size)[:size]}) + "\n")
    run = root / ".batchpilot" / "runs" / f"20261128-101500-code-review-{size:05d}"  # a default-length run path
    result = CliRunner().invoke(cli, ["prepare", "--template", "code-review", "--items", str(items), "--run", str(run),
                                      "--mode", "agents"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    start = time.perf_counter()
    receipt = fanout_run(run)
    fanout_seconds = time.perf_counter() - start
    printed = len(format_receipt(receipt).encode())
    tasks = receipt["tasks"]
    empty = len(format_receipt(dict(receipt, tasks=[])).encode())
    per_task = (printed - empty) / len(tasks)
    call = sum(len(json.dumps({"description": t["description"], "prompt": t["prompt"], "model": receipt["model"]}).encode())
               for t in tasks) / len(tasks)
    reply = len(REPLY_DONE.encode())
    prompt_file = (run / "prompts" / f"{tasks[0]['id']}.md").read_text()
    naive_prompt = len(prompt_file.encode())  # instructions + item + schema, pasted into the Agent call
    naive = size + naive_prompt + len(json.dumps(ANSWER, indent=2).encode())  # read item, send prompt, read answer
    return {
        "item_bytes": size,
        "items": n,
        "this_design": {
            "receipt_bytes_per_task": round(per_task, 1),
            "receipt_bytes_per_task_amortised": round(printed / len(tasks), 1),
            "agent_call_bytes": round(call, 1),
            "reply_bytes": reply,
            "read_plus_reply": round(per_task + reply, 1),
            "total_per_item": round(printed / len(tasks) + call + reply, 1),
        },
        "naive": {"read_item": size, "agent_call_bytes": naive_prompt, "answer_bytes": len(json.dumps(ANSWER, indent=2)),
                  "total_per_item": naive},
        "ratio_naive_over_this": round(naive / (printed / len(tasks) + call + reply), 1),
        "fanout_seconds": round(fanout_seconds, 3),
        "run_path_chars": len(str(run)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 items per size instead of 500")
    parser.add_argument("--items", type=int, default=None)
    args = parser.parse_args()
    n = args.items or (50 if args.quick else 500)
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(Path(tmp), n, size) for size in SIZES]
    print(json.dumps({"benchmark": "agents-orchestrator-bytes", "sizes": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
