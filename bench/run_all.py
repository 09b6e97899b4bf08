#!/usr/bin/env python3
"""Run every benchmark against the emulator, print one table of figures, and save them with the machine's facts.

Usage:
    python3 bench/run_all.py              # full sizes (about 10 minutes on 2 cores)
    python3 bench/run_all.py --quick      # each script's --quick (a few minutes)
    python3 bench/run_all.py --smoke --out OUT.json   # smallest sizes: proves every row is produced

Any `python3` (3.10 or newer) will do: the script prepares `.venv/` (the package in editable mode and its
dependencies; the same environment, made by the same code, as `tests/run.py`) when it is missing or stale,
and runs itself again inside it.

Each script runs as its own subprocess (so its memory figures are its own) and prints one JSON object; this
script turns those into rows. Every row is a figure next to a baseline measured in the same run, and the
ratio of the two, because the machine may be shared and absolute times drift; where the project states a
target the row says whether the ratio (or the value, where the target says so) meets it. The table
(Markdown) goes to stdout, progress to stderr, and everything (rows, each script's raw JSON, the machine, the
versions, the date, the command) to `--out`: by default bench/results.json for a full run (the latest
figures, committed) and bench/out/results-quick.json or -smoke.json (ignored by git) for the smaller sizes,
so a quick look never overwrites the committed figures. Exit status 1 if a script failed; a missed target
is a figure, not a failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SKILL = ROOT / "skills" / "batch-processing"
DEFAULT_OUT = {"full": BENCH / "results.json", "quick": BENCH / "out" / "results-quick.json",
               "smoke": BENCH / "out" / "results-smoke.json"}
VENV = ROOT / ".venv"
# Set on the re-executed process, so a `.venv` whose Python is not the one we land in fails instead of looping.
REEXEC_FLAG = "BENCH_REEXEC"

# Arguments per script and size. Full direct runs 900 items at 600 RPM (90 s of rate limit per executor),
# a little under the script's own default, and 600 items at 240,000 input tokens per minute (about 40 s), to
# keep the whole run near 10 minutes.
PROFILES: dict[str, dict[str, list[str]]] = {
    "full": {
        "startup": [], "direct": ["--items", "900", "--rpm", "600", "--token-items", "600", "--itpm", "240000",
                                  "--limiter-items", "600", "--limiter-rpm", "300"],
        "batch": ["--requests", "100000"],
        "merge": ["--sizes", "100000", "1000000"], "agents": [], "cost": ["--items", "1000"], "emulator": [],
        "media": [], "memory": [],
        "estimates": ["--items", "1000", "--pilot", "20"],
    },
    "quick": {name: ["--quick"] for name in ("startup", "direct", "batch", "merge", "agents", "cost", "emulator", "media",
                                             "memory", "estimates")},
    "smoke": {
        "startup": ["--runs", "1", "--no-warmup"],
        "direct": ["--items", "20", "--rpm", "600", "--token-items", "20", "--itpm", "240000", "--limiter-items", "20",
                   "--limiter-rpm", "600"], "batch": ["--requests", "2000"],
        "merge": ["--sizes", "1000", "5000"], "agents": ["--items", "5"], "cost": ["--items", "20"],
        "emulator": ["--seconds", "0.5", "--results", "2000"], "media": ["--files", "20", "--kb", "100"],
        "memory": ["--line-mb", "8"],
        "estimates": ["--items", "10", "--pilot", "4", "--templates", "classify"],
    },
}
SCRIPTS = {"startup": "bench_startup.py", "direct": "bench_direct.py", "batch": "bench_batch.py",
           "merge": "bench_merge.py", "agents": "bench_agents.py", "cost": "bench_cost.py",
           "emulator": "bench_emulator.py", "media": "bench_media.py", "memory": "bench_memory.py",
           "estimates": "bench_estimates.py"}


def row(bench: str, figure: str, value: float | None, unit: str, baseline: str, base: float | None,
        target: str | None = None, check: Callable[[float], bool] | None = None, ratio: float | None = None) -> dict:
    """One line of the table: the figure, its baseline, value / baseline, and the target if there is one."""
    if ratio is None and value is not None and base:
        ratio = value / base
    met = None if check is None or ratio is None else bool(check(ratio))
    return {"benchmark": bench, "figure": figure, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": base, "ratio": None if ratio is None else round(ratio, 4), "target": target, "pass": met}


def startup_rows(d: dict) -> list[dict]:
    m = d["median_seconds"]
    base = "`python -c 'import anthropic'`"
    return [
        row("startup", "`batchpilot --help`", m["help"], "s", base, m["import_anthropic"], "< 0.5", lambda r: r < 0.5),
        row("startup", "`batchpilot plan` (10 items)", m["plan_10"], "s", base, m["import_anthropic"], "< 0.5", lambda r: r < 0.5),
        row("startup", "`batchpilot status RUN --emulate` (ended 10-item run)", m["status_10"], "s", base, m["import_anthropic"]),
        row("startup", "`batchpilot plan` (10 items) from a Python without the dependencies (the shim's private venv)",
            m["plan_10_private_venv"], "s", "`batchpilot plan` from a Python that has them", m["plan_10"]),
        row("startup", "`batchpilot demo` (the README's main command)", m["demo"], "s", base, m["import_anthropic"]),
    ]


UTILISATION_TARGET = 0.90  # the share of a binding limit the direct executor must use


def direct_rows(d: dict) -> list[dict]:
    ours, naive = d["direct"], d["naive"]
    w = d["workload"]
    base = f"naive gather + Semaphore({w['concurrency']})"
    scale = f"{w['items']} items, {w['rpm']} RPM"
    tokens = d["input_tokens"]
    t_ours, t_naive, tw = tokens["direct"], tokens["naive"], tokens["workload"]
    t_scale = f"{tw['items']} items, {tw['itpm']:,} input tokens/min, limits from headers"
    at_least = f"value ≥ {UTILISATION_TARGET}"

    def ratio_or_none(a: float, b: float) -> float | None:  # a count next to a baseline count that may be 0
        return a / b if b else None

    return [
        row("direct", f"utilisation of the request limit ({scale})", ours["utilisation"], "share", base, naive["utilisation"],
            at_least, lambda _r, v=ours["utilisation"]: v >= UTILISATION_TARGET),
        row("direct", "HTTP 429 answers", ours["http_429"], "count", base, naive["http_429"],
            ratio=ratio_or_none(ours["http_429"], naive["http_429"])),
        row("direct", "requests sent per item", ours["requests_per_item"], "requests", base, naive["requests_per_item"]),
        row("direct", "items failed", ours["failed"], "count", base, naive["failed"], ratio=ratio_or_none(ours["failed"], naive["failed"])),
        row("direct", f"utilisation of the input-token limit ({t_scale})", t_ours["utilisation"], "share", base,
            t_naive["utilisation"], at_least, lambda _r, v=t_ours["utilisation"]: v >= UTILISATION_TARGET),
        row("direct", "HTTP 429 answers (input-token limit)", t_ours["http_429"], "count", base, t_naive["http_429"],
            ratio=ratio_or_none(t_ours["http_429"], t_naive["http_429"])),
        *limiter_rows(d["limiter"]),
    ]


FULL_START_429_TARGET = 0.01  # the share of 429 answers allowed from a full bucket
FULL_START_UTILISATION_TARGET = 0.95


def limiter_rows(d: dict) -> list[dict]:
    """The direct limiter from a full bucket, its drained start beside it as the baseline."""
    full, drained, w = d["full"], d["drained"], d["workload"]
    scale = f"{w['items']} items, {w['rpm']} RPM, {w['latency_s']} s latency"
    base = "the same run from a drained bucket"
    share = row("direct", f"429 share from a full bucket ({scale})", full["share_429"], "share", base,
                drained["share_429"], f"value ≤ {FULL_START_429_TARGET}")
    share["pass"] = full["share_429"] <= FULL_START_429_TARGET  # judged on the value: the baseline may be 0
    rows = [
        share,
        row("direct", f"utilisation from a full bucket ({scale})", full["utilisation"], "share", base,
            drained["utilisation"], f"value ≥ {FULL_START_UTILISATION_TARGET}",
            lambda _r, v=full["utilisation"]: v >= FULL_START_UTILISATION_TARGET),
    ]
    changed = d.get("changed")
    if changed:
        change = f"{scale}, halved to {changed['lowered_to_rpm']} RPM at two thirds"
        moved = row("direct", f"429 share through a limit change ({change})", changed["share_429"], "share",
                    "the same run from a full bucket, limit unchanged", full["share_429"],
                    f"value ≤ {FULL_START_429_TARGET}")
        moved["pass"] = changed["share_429"] <= FULL_START_429_TARGET
        rows += [moved, row("direct", f"utilisation through a limit change ({change})", changed["utilisation"], "share",
                            "the same run from a full bucket, limit unchanged", full["utilisation"])]
    return rows


def batch_rows(d: dict) -> list[dict]:
    s, f = d["submit"], d["fetch"]
    n = f"{d['requests']:,} × {round(d['request_bytes_mb'] * 1e6 / d['requests'] / 1000, 1)} KB"
    return [
        row("batch", f"`submit` peak RSS ({n})", s["batchpilot_streamed"]["peak_rss_mb"], "MB", "SDK `batches.create(requests=list)`",
            s["sdk_list_create"]["peak_rss_mb"], "≤ 0.333", lambda r: r <= 0.333),
        row("batch", "`submit` time", s["batchpilot_streamed"]["seconds"], "s", "SDK `batches.create(requests=list)`",
            s["sdk_list_create"]["seconds"]),
        row("batch", f"`fetch` time ({f['lines_recorded']:,} result lines)", f["batchpilot_fetch"]["seconds"], "s",
            "iterating SDK `batches.results()`", f["sdk_results_iteration"]["seconds"], "≤ 0.2 (5× faster)", lambda r: r <= 0.2),
        row("batch", "`fetch` peak RSS", f["batchpilot_fetch"]["peak_rss_mb"], "MB", "iterating SDK `batches.results()`",
            f["sdk_results_iteration"]["peak_rss_mb"]),
    ]


def merge_rows(d: dict) -> list[dict]:
    rows = []
    for r in d["runs"]:
        n = f"{r['items']:,} items"
        rows.append(row("merge", f"records per second ({n})", r["records_per_second"], "records/s",
                        "`json.loads` of every line, nothing kept", r["parse_only_records_per_second"],
                        f"value ≥ {d['target_records_per_second']:,}/s",
                        lambda _r, v=r["records_per_second"]: v >= d["target_records_per_second"]))
        rows.append(row("merge", f"peak RSS growth ({n})", r["rss_growth_mb"], "MB", "size of results.jsonl", r["results_mb"]))
    return rows


def agents_rows(d: dict) -> list[dict]:
    return [row("agents", f"orchestrator bytes per item ({s['item_bytes']:,}-byte items)", s["this_design"]["total_per_item"],
                "bytes", "naive: item + pasted prompt + full answer", s["naive"]["total_per_item"]) for s in d["sizes"]]


def cost_rows(d: dict) -> list[dict]:
    runs, c = d["runs"], d["comparisons"]
    within = "0.90–1.10"
    ok = lambda r: abs(r - 1) <= d["targets"]["estimate_error_at_most"]  # noqa: E731
    job = f"{d['items']:,} items, {d['system_prompt_tokens']:,}-token instructions"
    rows = [
        row("cost", f"batch billed ({job})", runs["batch"]["billed_usd"], "USD", "direct billed", runs["direct"]["billed_usd"],
            "≤ 0.5", lambda r: r <= 0.5 + 1e-9),
        row("cost", "batch + cache billed", runs["batch_cached"]["billed_usd"], "USD", "direct billed", runs["direct"]["billed_usd"],
            f"≤ {d['targets']['batch_cached_over_direct_at_most']}", lambda r: r <= d["targets"]["batch_cached_over_direct_at_most"]),
        row("cost", "direct + 5-minute cache billed (as `prepare --mode direct` sends)", runs["direct_cached"]["billed_usd"],
            "USD", "direct billed", runs["direct"]["billed_usd"]),
    ]
    out = d["output_tokens"]
    for mode in ("direct", "batch", "batch_cached", "direct_cached"):
        name = mode.replace("_cached", " + cache")
        cal = c[mode]["calibrated"]
        rows.append(row("cost", f"plan estimate, {name} (output estimate = emulator's {out['emulator_mean_per_item']} tokens/item)",
                        cal["estimate_usd"], "USD", f"{name} billed", cal["billed_usd"], within, ok))
        side = c[mode]["input_side"]
        rows.append(row("cost", f"plan estimate, {name}, input side only", side["estimate_usd"], "USD",
                        f"{name} billed, input side", side["billed_usd"], within, ok))
        raw = c[mode]["template_estimate"]
        rows.append(row("cost", f"plan estimate, {name} (template's {out['template_estimate_per_item']} output tokens/item)",
                        raw["estimate_usd"], "USD", f"{name} billed", raw["billed_usd"]))
    return rows


def emulator_rows(d: dict) -> list[dict]:
    return [row("emulator", "Messages requests per second", d["messages"]["requests_per_second"], "req/s",
                "bare `ThreadingHTTPServer`, fixed answer", d["bare_server"]["requests_per_second"])]


def media_rows(d: dict) -> list[dict]:
    p, s = d["prepare"], d["shard"]
    n = f"{d['files']:,} PDFs, {d['pdf_bytes_mb']:,} MB"
    payload = "requests.jsonl size (the inline payload)"
    return [
        row("media", f"`prepare --upload inline` peak RSS ({n})", p["peak_rss_mb"], "MB", payload, d["requests_bytes_mb"],
            "≤ 0.05", lambda r: r <= 0.05),
        row("media", f"largest batch body of {s['shards']} shard(s)", round(s["largest_body_bytes"] / 1e6, 1), "MB",
            "the API's 256 MB batch limit", round(d["batch_limit_bytes"] / 1e6, 1), "≤ 1", lambda r: r <= 1),
        row("media", "inline payload per PDF byte (base64)", d["requests_bytes_mb"], "MB", "PDF bytes", d["pdf_bytes_mb"]),
    ]


def memory_rows(d: dict) -> list[dict]:
    base, target = d["cases"]["baseline"], d["target_ratio"]
    labels = {"dev_zero": "plan --items /dev/zero", "fifo": "plan --items FIFO",
              "long_line": f"plan, one {d['line_mb']} MB line", "long_line_prep": f"prepare, one {d['line_mb']} MB line"}
    return [row("memory", f"peak RSS, {label} ({d['cases'][name]['seconds']} s)", d["cases"][name]["peak_rss_mb"], "MB",
                "plan of 10 small files", base["peak_rss_mb"], f"≤ {target}", lambda r: r <= target)
            for name, label in labels.items()]


def estimates_rows(d: dict) -> list[dict]:
    out = []
    for r in d["rows"]:
        job = f"{r['template']}, {r['mode']}, {d['items']:,} varied items"
        low, high = (x / r["plan_expected_usd"] for x in r["plan_range_usd"])
        out.append(row("estimates", f"billed ({job}), template-only estimate", r["billed_usd"], "USD", "plan's expected cost",
                       r["plan_expected_usd"], f"in plan's range {low:.2f}–{high:.2f}",
                       lambda x, lo=low, hi=high: lo <= x <= hi))
        out.append(row("estimates", f"pilot of {d['pilot']}: extrapolated whole job ({job})", r["pilot_extrapolated_usd"],
                       "USD", "billed, pilot + rest", r["pilot_billed_usd"], "0.85–1.15",
                       lambda x: abs(x - 1) <= d["targets"]["pilot_error_at_most"]))
    return out


ROWS: dict[str, Callable[[dict], list[dict]]] = {
    "startup": startup_rows, "direct": direct_rows, "batch": batch_rows, "merge": merge_rows,
    "agents": agents_rows, "cost": cost_rows, "emulator": emulator_rows, "media": media_rows, "memory": memory_rows,
    "estimates": estimates_rows,
}


def run_script(name: str, args: list[str]) -> tuple[dict | None, float, str]:
    """Run one benchmark script; its JSON (None on failure), its wall time, and its stderr tail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHPILOT_"))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCH / SCRIPTS[name]), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return None, seconds, done.stderr[-3000:]
    try:
        return json.loads(done.stdout), seconds, ""
    except ValueError as exc:
        return None, seconds, f"not one JSON object on stdout: {exc}\n{done.stdout[-1000:]}"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("anthropic", "click", "jsonschema"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    sys.path.insert(0, str(SKILL))
    from batchpilot.version import __version__

    out["batchpilot"] = __version__
    return out


def scrub(value: Any) -> Any:
    """Machine-specific paths out of the saved figures: the checkout becomes relative, temp dirs <tmp>."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        for prefix, token in ((str(ROOT) + os.sep, ""), (str(ROOT), "."), (tempfile.gettempdir(), "<tmp>"),
                              (str(Path.home()), "~")):
            value = value.replace(prefix, token)
    return value


def fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | figure | value | baseline | baseline value | ratio | target | pass |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = {True: "pass", False: "FAIL", None: "—"}[r["pass"]]
        lines.append(f"| {r['benchmark']} | {r['figure']} | {fmt(r['value'])} {r['unit']} | {r['baseline']} | "
                     f"{fmt(r['baseline_value'])} | {fmt(r['ratio'])} | {r['target'] or '—'} | {verdict} |")
    return "\n".join(lines)


def in_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_environment(argv: list[str]) -> int | None:
    """Prepare `.venv/` with tests/run.py's own code; re-run this script inside it unless already there.

    Returns None to go on in this process, or the exit status of the re-run (on POSIX the process is replaced).
    """
    spec = importlib.util.spec_from_file_location("tests_run", ROOT / "tests" / "run.py")
    assert spec is not None and spec.loader is not None
    tests_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests_run)
    python = tests_run.ensure_project_venv()  # a no-op when .venv's stamp matches pyproject.toml
    if in_project_venv():
        return None
    if os.environ.get(REEXEC_FLAG):
        print(f"Error: re-ran in {python}, but sys.prefix is {sys.prefix}", file=sys.stderr)
        return 1
    args = [str(python), str(Path(__file__).resolve()), *argv]
    env = dict(os.environ, **{REEXEC_FLAG: "1"})
    if os.name == "nt":
        return subprocess.run(args, env=env).returncode
    os.execve(str(python), args, env)
    return None  # not reached: execve replaced this process


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):
        print("Error: Python 3.10 or newer is needed", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="each script's --quick sizes")
    size.add_argument("--smoke", action="store_true", help="the smallest sizes (the test suite's smoke test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the JSON (default: bench/results.json; with --quick or --smoke, bench/out/results-SIZE.json)")
    parser.add_argument("--only", action="append", choices=sorted(SCRIPTS), help="run only this benchmark; repeatable")
    args = parser.parse_args(argv)
    status = ensure_environment(argv)
    if status is not None:
        return status
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    out: Path = args.out or DEFAULT_OUT[profile]
    names = [n for n in SCRIPTS if not args.only or n in args.only]
    started = time.perf_counter()
    raw, rows, failures, timings = {}, [], {}, {}
    for name in names:
        print(f"bench: {SCRIPTS[name]} {' '.join(PROFILES[profile][name])} ...", file=sys.stderr, flush=True)
        data, seconds, error = run_script(name, PROFILES[profile][name])
        timings[name] = round(seconds, 1)
        if data is None:
            failures[name] = error
            print(f"bench: {SCRIPTS[name]} FAILED after {seconds:.0f} s\n{error}", file=sys.stderr)
            continue
        print(f"bench: {SCRIPTS[name]} done in {seconds:.0f} s", file=sys.stderr)
        raw[name] = data
        rows += ROWS[name](data)
    command = "python3 bench/run_all.py" + {"full": "", "quick": " --quick", "smoke": " --smoke"}[profile]
    command += "".join(f" --only {n}" for n in args.only or ())
    result = {
        "command": command,
        "profile": profile,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine()},
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 1),
        "script_seconds": timings,
        "rows": rows,
        "failed": failures,
        "raw": raw,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(scrub(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(rows))
    print(f"\n{command}: {result['date']}, {os.cpu_count()} CPUs, {result['seconds']:.0f} s; written to {out}",
          file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
