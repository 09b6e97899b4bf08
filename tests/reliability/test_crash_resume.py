"""Kill -9 at chosen points of every command that changes a run, re-run, converge.

Counts: 35 kill points — prepare 3, submit 6, status 2, fetch 6, retry 6, merge 3 (batch mode: three
pipelines of prepare → submit → status --wait → fetch → retry → merge), direct 5 (two runs), fanout 1 and
collect 3 (agents mode, three runs). `KILL_POINTS` is the list; a test checks the count.

Each command runs as a subprocess (`python -m batchpilot`, cwd a tmp dir) against an emulator started here
with a request log. `BATCHPILOT_CRASH_AFTER` makes the process SIGKILL itself at one deterministic point:
after its Nth batch-ledger journal write (`journal:N`), after its Nth fsynced append to a file
(`append:results.jsonl:N`), or at a named point (`crash.py` lists them). A step is given a list of points:
the first run dies at the first point, the re-run at the second, and so on (each run must die: exit -9
proves the point was reached), then the same command runs clean until it exits 0.

What must hold afterwards, measured on the server's side (the emulator's log, and a tap on its handler):
* batch: exactly one create per planned shard (no duplicate create), and no item in any create after the
  batch in which it succeeded (no re-sent succeeded item);
* direct: no item whose success was recorded before a kill is sent again;
* agents: every output file recorded once;
* every run: `merged.jsonl` equal, byte for byte, to the uninterrupted run's (merged records hold no
  timestamps, and item sources are relative paths, so nothing needs removing before the comparison), the
  same number of result records, and no half-prepared `.partial` directory left beside the run.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reliability.harness import Tap, clean_env, cli, results, write_items, write_tiny_template

BATCH_STEPS = [("prepare",), ("submit",), ("status", "--wait"), ("fetch",), ("retry",), ("merge",)]
# One pipeline per dict: step -> the points its successive runs die at. Journal writes of a first run for
# this job (8 items, shards of 4): submit 1 round_planned, 2/4 submit_intent, 3/5 batch_created; status 1-2
# batch_ended; fetch 1 results_downloaded, 2 results_recording, 3 results_recorded, 4-6 the second batch;
# retry 1 round_planned, 2 submit_intent, 3 batch_created, 4 batch_ended, 5 results_downloaded, ...
# A re-run counts from 1 again, over what is left to do.
BATCH_PIPELINES = [
    {"prepare": ["prepare-after-items", "prepare-before-rename"], "submit": ["journal:1", "after-create-before-journal"],
     "status": ["journal:1"], "fetch": ["mid-download", "journal:2"], "retry": ["journal:1", "after-create-before-journal"],
     "merge": ["merge-mid-write", "merge-before-summary"]},
    {"prepare": ["append:journal.jsonl:1"], "submit": ["journal:2", "journal:3"], "status": ["journal:2"],
     "fetch": ["after-download-before-journal", "mid-record"], "retry": ["journal:2", "journal:4"],
     "merge": ["append:journal.jsonl:1"]},
    {"submit": ["journal:4", "journal:1"], "fetch": ["journal:3", "journal:1"], "retry": ["journal:3", "journal:2"]},
]
DIRECT_PIPELINES = [["append:journal.jsonl:1", "append:results.jsonl:1"],
                    ["append:results.jsonl:2", "append:results.jsonl:4", "append:results.jsonl:1"]]
AGENT_PIPELINES = [
    {"fanout": ["append:journal.jsonl:1"], "collect": ["append:results.jsonl:1"]},
    {"collect": ["append:journal.jsonl:1"]},
    {"collect": ["append:journal.jsonl:2"]},
]
KILL_POINTS = [(step, n, point) for p in BATCH_PIPELINES + AGENT_PIPELINES for step, points in p.items()
               for n, point in enumerate(points, 1)] + \
              [("direct", n, point) for points in DIRECT_PIPELINES for n, point in enumerate(points, 1)]

BATCH_ITEMS, SHARD = 8, "4"
DIRECT_ITEMS = 10
AGENT_ITEMS = 6


def until_ok(cwd: Path, env: dict, args: tuple, crashes: list[str] | None, on_kill=None) -> int:
    """Run once per crash point (each run must die there), then without one until exit 0. Returns kills."""
    crashes = list(crashes or ())
    killed = 0
    for attempt in range(len(crashes) + 3):
        crash = crashes[attempt] if attempt < len(crashes) else None
        done = cli(cwd, dict(env, BATCHPILOT_CRASH_AFTER=crash) if crash else env, *args)
        if crash:
            assert done.returncode == -9, f"{args} {crash}: the point was not reached (exit {done.returncode})\n{done.stderr[-1500:]}"
        elif done.returncode == 0:
            return killed
        else:
            assert done.returncode == -9, f"{args}: exit {done.returncode}\n{done.stderr[-2000:]}"
        killed += 1
        if on_kill:
            on_kill()
    raise AssertionError(f"{args} after {crashes} did not converge")


def emulator(cwd: Path, **config):
    from batchpilot.emulator.config import EmulatorConfig
    from batchpilot.emulator.http.server import Emulator

    return Emulator(EmulatorConfig(seed=7, data_dir=str(cwd / "emu"), log_path=str(cwd / "emu.log"), **config))


def finish(cwd: Path, name: str, killed: int, internal: int) -> dict:
    run = cwd / "job"
    assert not [p.name for p in cwd.iterdir() if ".partial" in p.name], f"{name}: a half-prepared run was left"
    return {"name": name, "killed": killed, "internal": internal, "merged": (run / "merged.jsonl").read_bytes(),
            "results": len(results(run)), "summary": json.loads((run / "summary.json").read_text())["counts"]}


# ------------------------------------------------------------------------------------------- batch


def batch_pipeline(root: Path, name: str, crashes: dict) -> dict:
    from batchpilot.emulator.behaviour.faults import FaultRule

    cwd = root / name
    cwd.mkdir()
    write_items(cwd / "items.jsonl", BATCH_ITEMS)
    faults = [FaultRule("overloaded", 0.25), FaultRule("drop_results", 1.0, times=1)]
    with emulator(cwd, faults=faults) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url, BATCHPILOT_MAX_BATCH_REQUESTS=SHARD)
        killed = 0
        for step in BATCH_STEPS:
            args = (step[0], *step[1:], "job") if step[0] != "prepare" else \
                ("prepare", "--template", "code-review", "--items", "items.jsonl", "--run", "job")
            killed += until_ok(cwd, env, args, crashes.get(step[0]))
        internal = emu.stats()["internal_errors"]
        calls = tap.snapshot()
    run = cwd / "job"
    journal = [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]
    shards = sum(len(e["shards"]) for e in journal if e["event"] == "round_planned")
    creates = [c for c in calls if c.kind == "create" and c.status == 200]
    assert len(creates) == shards, f"{name}: {len(creates)} creates for {shards} shards"
    order = {c.batch_id: i for i, c in enumerate(creates)}
    for rec in results(run):
        if rec["result"]["type"] == "succeeded":
            later = [c.batch_id for c in creates[order[rec["batch_id"]] + 1:] if rec["custom_id"] in c.ids]
            assert not later, f"{name}: {rec['custom_id']} succeeded in {rec['batch_id']} and was re-sent in {later}"
    out = finish(cwd, name, killed, internal)
    out["shards"] = shards
    return out


# ------------------------------------------------------------------------------------------- direct


def direct_run(root: Path, name: str, crashes: list[str] | None) -> dict:
    from batchpilot.emulator.behaviour.faults import FaultRule

    cwd = root / name
    cwd.mkdir()
    write_items(cwd / "items.jsonl", DIRECT_ITEMS)
    tpl = write_tiny_template(cwd)
    with emulator(cwd, faults=[FaultRule("overloaded", 0.2)]) as emu:
        tap = Tap(emu)
        env = clean_env(emu.base_url)
        assert cli(cwd, env, "prepare", "-t", tpl, "-i", "items.jsonl", "--mode", "direct", "--run", "job").returncode == 0
        guarded: list[tuple[int, set[str]]] = []  # (tap position at the kill, ids acknowledged by then)

        def on_kill():
            guarded.append((len(tap.snapshot()), {r["custom_id"] for r in results(cwd / "job")
                                                  if r["result"]["type"] == "succeeded"}))

        killed = until_ok(cwd, env, ("direct", "job", "--concurrency", "2"), crashes, on_kill)
        killed += until_ok(cwd, env, ("merge", "job"), None)
        internal = emu.stats()["internal_errors"]
        calls = [c for c in tap.snapshot()]
    for position, acked in guarded:
        resent = [c.ids for c in calls[position:] if c.kind == "message" and set(c.ids) & acked]
        assert not resent, f"{name}: items recorded as succeeded before the kill were sent again: {resent}"
    succeeded = [r["custom_id"] for r in results(cwd / "job") if r["result"]["type"] == "succeeded"]
    assert len(succeeded) == len(set(succeeded)) == DIRECT_ITEMS, name
    return finish(cwd, name, killed, internal)


# ------------------------------------------------------------------------------------------- agents


def write_outputs(run: Path) -> None:
    """Play the subagents: a valid answer per item, except item-0002's, which is not JSON (stays invalid)."""
    for line in (run / "items.jsonl").read_text().splitlines():
        cid = json.loads(line)["custom_id"]
        text = "not json {" if cid == "item-0002" else json.dumps({"label": f"label-{cid}"})
        (run / "outputs" / f"{cid}.json").write_text(text)


def agents_run(root: Path, name: str, crashes: dict) -> dict:
    cwd = root / name
    cwd.mkdir()
    write_items(cwd / "items.jsonl", AGENT_ITEMS)
    tpl = write_tiny_template(cwd)
    env = clean_env(None, key=None)
    assert cli(cwd, env, "prepare", "-t", tpl, "-i", "items.jsonl", "--mode", "agents", "--run", "job").returncode == 0
    killed = until_ok(cwd, env, ("fanout", "job"), crashes.get("fanout"))
    write_outputs(cwd / "job")
    killed += until_ok(cwd, env, ("collect", "job"), crashes.get("collect"))
    killed += until_ok(cwd, env, ("merge", "job"), None)
    recorded = [r["output_sha256"] for r in results(cwd / "job")]
    assert len(recorded) == len(set(recorded)) == AGENT_ITEMS, f"{name}: an output was recorded twice"
    return finish(cwd, name, killed, 0)


def test_kill_points_are_counted():
    assert len(KILL_POINTS) >= 20
    assert {step for step, _, _ in KILL_POINTS} >= {"prepare", "submit", "status", "fetch", "retry", "direct",
                                                    "collect", "merge"}


def test_kill_anywhere_then_rerun_converges(tmp_path):
    jobs = [(batch_pipeline, "batch-base", {})]
    jobs += [(batch_pipeline, f"batch-{i}", p) for i, p in enumerate(BATCH_PIPELINES)]
    jobs += [(direct_run, "direct-base", None)] + [(direct_run, f"direct-{i}", p) for i, p in enumerate(DIRECT_PIPELINES)]
    jobs += [(agents_run, "agents-base", {})] + [(agents_run, f"agents-{i}", p) for i, p in enumerate(AGENT_PIPELINES)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = {o["name"]: o for o in pool.map(lambda j: j[0](tmp_path, *j[1:]), jobs)}
    for family in ("batch", "direct", "agents"):
        base = outs[f"{family}-base"]
        assert base["killed"] == 0
        for name, out in outs.items():
            if not name.startswith(family + "-") or name == base["name"]:
                continue
            assert out["killed"] >= 1 and out["internal"] == 0, name
            assert out["merged"] == base["merged"], f"{name}: merged.jsonl differs from the uninterrupted run's"
            assert out["results"] == base["results"], name
            if family == "batch":
                assert out["shards"] == base["shards"], name
    assert outs["batch-base"]["shards"] > 2, "the batch job should need a retry round"
    assert outs["batch-base"]["summary"]["ok"] >= BATCH_ITEMS - 1
    assert outs["direct-base"]["summary"]["ok"] == DIRECT_ITEMS
    assert outs["agents-base"]["summary"] == {**outs["agents-base"]["summary"], "ok": AGENT_ITEMS - 1, "invalid": 1}
