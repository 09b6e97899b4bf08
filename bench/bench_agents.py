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
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = ROOT / "skills" / "batch-processing"
sys.path.insert(0, str(PACKAGE_ROOT))

from batchpilot.executors.prompts import REPLY_DONE  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])))
# `python -m batchpilot fanout RUN`, run the way `-m` runs it, timed inside its process once the libraries and
# the executor are imported (the time is fanout's work, not start-up); its stdout is the receipt, byte for byte
# what the orchestrating agent reads.
FANOUT_SIDE = r"""
import runpy, sys, time
import click, jsonschema, batchpilot.executors.agents, batchpilot.prepare.templates
report = sys.argv.pop(1)
started = time.perf_counter()
try:
    runpy.run_module("batchpilot", run_name="__main__", alter_sys=True)
finally:
    open(report, "w").write(repr(time.perf_counter() - started))
"""

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
    subprocess.run([sys.executable, "-m", "batchpilot", "-q", "prepare", "--template", "code-review", "--items", str(items),
                    "--run", str(run), "--mode", "agents"], check=True, env=ENV, stdout=subprocess.DEVNULL)
    timing = root / f"fanout-{size}.seconds"
    done = subprocess.run([sys.executable, "-c", FANOUT_SIDE, str(timing), "-q", "fanout", str(run)], check=True, env=ENV,
                          stdout=subprocess.PIPE)
    fanout_seconds = float(timing.read_text())
    text = done.stdout.decode().removesuffix("\n")  # the receipt as printed, without echo's line end
    receipt = json.loads(text)
    printed = len(text.encode())
    tasks = receipt["tasks"]
    empty = len(without_tasks(text).encode())
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


def without_tasks(printed: str) -> str:
    """A printed fanout receipt with its task list emptied, as it would print with `"tasks": []` (the rest of
    the receipt is longer than one receipt row, so it stays one key per line either way)."""
    start = printed.index('\n  "tasks": [\n') + len('\n  "tasks": ')
    end = printed.index("\n  ]", start) + len("\n  ]")
    return printed[:start] + "[]" + printed[end:]


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
