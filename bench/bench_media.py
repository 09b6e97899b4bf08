"""Benchmark documents in batch mode: memory of preparing big PDFs inline, and the shards they are cut into.

    python bench/bench_media.py [--quick] [--files N] [--kb K]

Writes N generated PDFs of about K KB each (default 2,000 x 1,000 KB; --quick 200), then in subprocesses
that report their own time and peak RSS:

* prepare: `batchpilot prepare -t summarize -i DIR --mode batch --upload inline` (every PDF base64-encoded
  into requests.jsonl, streamed item by item);
* shard: the shards `submit` would create (`plan_shards` with the API's limits), and every shard's body
  read through `ShardBody` to count its exact serialized size.

Prints one JSON object: the payload (PDF bytes, requests.jsonl bytes), both sides' seconds and peak RSS, the
shard count and the largest body. The figures to read: prepare's peak RSS against the payload's size (it
must not grow with it), and the largest shard body against the 256 MB limit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the generated-PDF writer the tests use

from media_samples import pdf  # noqa: E402

PRELUDE = r"""
import sys, time, json as _json
_report = sys.argv.pop(1)
def _done(started, **extra):
    peak = None
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    open(_report, "w").write(_json.dumps({"seconds": round(time.perf_counter() - started, 2),
                                          "peak_rss_mb": round(peak, 1), **extra}))
"""

PREPARE_SIDE = r"""
import runpy
started = time.perf_counter()
sys.argv = ["batchpilot", "-q", "prepare", "-t", "summarize", "-i", sys.argv[1], "--mode", "batch", "--upload",
            "inline", "--run", sys.argv[2]]
try:
    runpy.run_module("batchpilot", run_name="__main__", alter_sys=True)  # `python -m batchpilot`, measured here
except SystemExit as exc:
    if exc.code:
        raise
_done(started)
"""

SHARD_SIDE = r"""
from pathlib import Path
from batchpilot.executors.batch.shards import ShardBody, limits, plan_shards
started = time.perf_counter()
path = Path(sys.argv[1])
shards = plan_shards(path, *limits())
largest = 0
for shard in shards:
    body, size = ShardBody(path, shard), 0
    while True:
        chunk = body.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
    body.close()
    assert size == shard.bytes, (size, shard.bytes)
    largest = max(largest, size)
_done(started, shards=len(shards), largest_body_bytes=largest, requests=sum(s.requests for s in shards))
"""


def side(code: str, *args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        report = fh.name
    done = subprocess.run([sys.executable, "-c", PRELUDE + code, report, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"side failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(Path(report).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 files")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--kb", type=int, default=1000, help="size of each PDF in KB")
    args = parser.parse_args()
    files = args.files or (200 if args.quick else 2000)
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        pdf_bytes = 0
        for n in range(files):
            data = pdf(3, pad=args.kb * 1000, text=f"Invoice {n}: total {n * 7 % 1000}.00 EUR")
            (inbox / f"invoice-{n:05d}.pdf").write_bytes(data)
            pdf_bytes += len(data)
        run = Path(tmp) / "run"
        prepare = side(PREPARE_SIDE, str(inbox), str(run))
        requests = run / "requests.jsonl"
        shard = side(SHARD_SIDE, str(requests))
        print(json.dumps({
            "files": files, "pdf_bytes_mb": round(pdf_bytes / 1e6, 1),
            "requests_bytes_mb": round(requests.stat().st_size / 1e6, 1),
            "prepare": prepare, "shard": shard, "batch_limit_bytes": 256 * 1024 * 1024,
        }))


if __name__ == "__main__":
    main()
