"""`run --pilot N`: run N items through the direct API first, measure them, extrapolate the whole job, then
stop or continue with the rest in the chosen mode without redoing the pilot items.

1. Selection (`select_pilot`): a stratified sample of the prepared requests by estimated input size, the
   N/4 shortest, the N/4 longest and the rest picked by a hash of the custom_id (a seeded random sample),
   in one streaming pass with bounded heaps. The ids go to `rounds/pilot.jsonl`; every other request line
   to `rounds/rest-1.jsonl`, which becomes batch mode's first round (direct mode skips what succeeded).
2. The pilot runs on the direct executor with `rounds/pilot-todo.jsonl`: the pilot lines not yet answered,
   so a killed pilot re-run sends no answered item again. Then the run is merged, so the pilot's results
   can be read in merged.jsonl and report.md.
3. Measurement (`measure`): billed tokens (input, output, cache read and write), cost, the invalid share.
   The whole job is extrapolated from it: the shared (cached) prefix is the length the pilot was billed for
   it, the rest of each request's input is the local estimate scaled by the pilot's billed/estimated ratio of
   that rest (an attachment counted by its pages or pixels, `pilot_sizes`); output follows a power law of the
   item's own size (`Sizes.item`: its messages and attachment, without the instructions every request
   shares), out = a * in^b, fitted by least squares on the pilot's log sizes (b ~ 0 when answers have one
   length whatever the item, larger when they grow with it), with the mean residual factor so the fit is
   unbiased. Cost and time per mode are plan's formulas (`prepare.costs.mode_costs`) on those tallies, plus
   what the pilot already cost.
4. `pilot.json` (written atomically, under the run lock) records it all; a re-run finds it and goes on.
   With `--pilot-only`, when the extrapolated cost of the chosen mode exceeds `--max-cost`, or when no pilot
   item was answered (nothing measured bounds the rest; typed again, the pilot is sent again), `run` stops
   after the pilot, journals `pilot_stopped` (so the run is not finished: the same `run` typed again resumes
   it) and its receipt says how to continue. A pilot.json of another shape is an Error, not a traceback.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import atomic_write_json, read_json
from batchpilot.core.models import USAGE_KEYS, cost_usd
from batchpilot.core.progress import Progress
from batchpilot.core.tokens import request_segments
from batchpilot.executors.pilot_sizes import Sizes
from batchpilot.prepare.estimates import OUTPUT_SPREAD
from batchpilot.prepare.costs import Tally, cached_prefix_tokens, mode_costs
from batchpilot.results.summary import run_prices
from batchpilot.rundir.journal import journal
from batchpilot.rundir.lock import run_lock
from batchpilot.rundir.manifest import open_run

PILOT_FILE = "rounds/pilot.jsonl"
TODO_FILE = "rounds/pilot-todo.jsonl"
REST_FILE = "rounds/rest-1.jsonl"
PILOT_MODES = ("batch", "direct")


@dataclass
class PilotOutcome:
    """The pilot's receipt section, and whether `run` stops after it."""

    receipt: dict
    stop: str | None  # why run stops ("--pilot-only", "max_cost"), or None to continue
    rest: int  # requests left for the chosen mode


def _line_id(line: bytes) -> str:
    return str(json.loads(line)["custom_id"])


def _hash(custom_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(custom_id.encode(), digest_size=8).digest(), "big")


def select_pilot(requests: Path, n: int) -> list[str]:
    """The pilot's custom_ids: the n/4 shortest and n/4 longest requests by estimated input, the rest by hash."""
    ends = n // 4
    short: list[tuple[int, int, str]] = []  # max-heap of the shortest (negated sizes)
    long: list[tuple[int, int, str]] = []  # min-heap of the longest
    sample: list[tuple[int, str]] = []  # max-heap of the smallest hashes (negated)
    with open(requests, "rb") as fh, Sizes(requests.with_name("items.jsonl")) as sizes:
        for index, line in enumerate(fh):
            record = json.loads(line)
            cid = str(record["custom_id"])
            size = sizes.input(cid, record["params"])
            for heap, key in ((short, (-size, -index, cid)), (long, (size, index, cid))):
                if ends and len(heap) < ends:
                    heapq.heappush(heap, key)
                elif ends and key > heap[0]:
                    heapq.heapreplace(heap, key)
            h = (-_hash(cid), cid)
            if len(sample) < n:
                heapq.heappush(sample, h)
            elif h > sample[0]:
                heapq.heapreplace(sample, h)
    chosen = {c for *_, c in short} | {c for *_, c in long}
    for _, cid in sorted(sample, reverse=True):  # smallest hash first
        if len(chosen) >= n:
            break
        chosen.add(cid)
    return sorted(chosen)


def _split(run_dir: Path, ids: set[str]) -> int:
    """Write the pilot's and the rest's request files (atomic); the number of rest lines."""
    rest = 0
    (run_dir / "rounds").mkdir(exist_ok=True)
    tmp_pilot, tmp_rest = run_dir / "rounds/.pilot.tmp", run_dir / "rounds/.rest-1.tmp"
    with open(run_dir / "requests.jsonl", "rb") as src, open(tmp_pilot, "wb") as pilot, open(tmp_rest, "wb") as other:
        for line in src:
            line = line if line.endswith(b"\n") else line + b"\n"
            if _line_id(line) in ids:
                pilot.write(line)
            else:
                other.write(line)
                rest += 1
        for fh in (pilot, other):
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp_pilot, run_dir / PILOT_FILE)
    os.replace(tmp_rest, run_dir / REST_FILE)
    return rest


def _split_intact(run_dir: Path, ids: set[str], rest: int) -> bool:
    """Whether the pilot's and the rest's request files hold what `_split` wrote: every line a request, the
    pilot's exactly its ids and the rest `rest` others (one read; a damaged or missing file is False)."""
    try:
        with open(run_dir / PILOT_FILE, "rb") as pilot, open(run_dir / REST_FILE, "rb") as other:
            if {_line_id(line) for line in pilot} != ids:
                return False
            count = 0
            for line in other:  # streamed: the rest can be large
                if _line_id(line) in ids:
                    return False
                count += 1
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return count == rest


def _latest(run_dir: Path, ids: set[str]) -> dict[str, dict]:
    """The latest results.jsonl record of each id in `ids`."""
    latest: dict[str, dict] = {}
    path = run_dir / "results.jsonl"
    if path.exists():
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn last line
                if record.get("custom_id") in ids:
                    latest[record["custom_id"]] = record
    return latest


def _write_todo(run_dir: Path, ids: set[str]) -> int:
    """rounds/pilot-todo.jsonl: the pilot lines whose latest result is not a success; how many."""
    done = {cid for cid, r in _latest(run_dir, ids).items() if (r.get("result") or {}).get("type") == "succeeded"}
    count = 0
    with open(run_dir / PILOT_FILE, "rb") as src, open(run_dir / "rounds/.todo.tmp", "wb") as dst:
        for line in src:
            if _line_id(line) not in done:
                dst.write(line)
                count += 1
    os.replace(run_dir / "rounds/.todo.tmp", run_dir / TODO_FILE)
    return count


def fit_power_law(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(a, b, smear) of out = smear * a * in^b fitted on log-log points (in, out > 0); b = 0 for < 2 sizes."""
    pts = [(math.log(max(x, 1)), math.log(max(y, 1))) for x, y in points]
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / var if var > 1e-9 else 0.0
    b = min(max(b, 0.0), 1.5)  # an answer does not shrink as its item grows, nor grow faster than it
    a = math.exp(my - b * mx)
    smear = sum(math.exp(y - (math.log(a) + b * x)) for x, y in pts) / len(pts)
    return a, b, smear


def measure(run_dir: Path, ids: set[str], merged_status: dict[str, str]) -> dict:
    """The pilot's billed figures and the whole job's extrapolation, per mode."""
    manifest = open_run(run_dir)
    prices = run_prices(manifest)
    records = _latest(run_dir, ids)
    billed = {k: 0 for k in USAGE_KEYS}
    cost = 0.0
    points: list[tuple[float, float]] = []
    estimated_in = billed_in = estimated_prefix = billed_prefix = 0
    with open(run_dir / PILOT_FILE, "rb") as fh, Sizes(run_dir / "items.jsonl") as sizes:
        for line in fh:
            request = json.loads(line)
            cid = request["custom_id"]
            result = (records.get(cid) or {}).get("result") or {}
            usage = (result.get("message") or {}).get("usage") if result.get("type") == "succeeded" else None
            if not usage:
                continue
            for key in USAGE_KEYS:
                billed[key] += int(usage.get(key) or 0)
            cost += cost_usd(prices, usage, batch=False) if prices else 0.0
            estimate = sizes.input(cid, request["params"])
            paid_in = sum(int(usage.get(k) or 0) for k in USAGE_KEYS if k != "output_tokens")
            estimated_in += estimate
            billed_in += paid_in
            estimated_prefix += cached_prefix_tokens(request["params"])
            billed_prefix += int(usage.get("cache_read_input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
            points.append((sizes.item(cid, request["params"]), int(usage.get("output_tokens") or 0)))
    answered = len(points)
    figures: dict[str, Any] = {
        "items": len(ids), "answered": answered, "ids_file": PILOT_FILE, "billed_tokens": billed,
        "billed_cost_usd": round(cost, 6) if prices else None,
        "invalid_share": round(sum(1 for c in ids if merged_status.get(c) == "invalid") / max(len(ids), 1), 3),
        "cache": {"read": billed["cache_read_input_tokens"], "written": billed["cache_creation_input_tokens"]},
    }
    if not answered:
        figures["extrapolated"] = None
        return figures
    a, b, smear = fit_power_law(points)
    # The shared prefix is measured, not scaled: every answered pilot request either read it from the cache or
    # wrote it, so (read + written) / answered is its billed length (0 when the API cached nothing, e.g. below
    # the model's minimum). Only the rest of each request is scaled by billed/estimated. The prefix weighs far
    # more in batch mode (a miss rewrites it at 2x) than in direct (0.1x reads), so scaling it by the ratio of
    # the whole request, dominated by the items, mis-prices batch caching when the instructions and the items
    # tokenize differently.
    prefix = round(billed_prefix / answered) if billed_prefix else 0
    # The estimates count attachments by their pages and pixels (`pilot_sizes`), so one ratio serves text and
    # attachments: fitted apart on a pilot's few requests, the short text beside a document swings wildly.
    if prefix:
        input_ratio = (billed_in - billed_prefix) / max(estimated_in - estimated_prefix, 1)
    else:
        input_ratio = billed_in / max(estimated_in, 1)
    rest = Tally.for_prices(prices, spread=OUTPUT_SPREAD["pilot"], input_error=0.05)
    with open(run_dir / REST_FILE, "rb") as fh, Sizes(run_dir / "items.jsonl") as sizes:
        for line in fh:
            request = json.loads(line)
            cid, params = request["custom_id"], request["params"]
            estimate = sizes.input(cid, params)
            predicted = min(round(smear * a * max(sizes.item(cid, params), 1) ** b), int(params.get("max_tokens") or 0))
            own = estimate - (cached_prefix_tokens(params) if prefix else 0)
            rest.add(params, predicted, input_tokens=prefix + round(max(own, 0) * input_ratio))
    rest.prefix_tokens = prefix
    ttl = _rest_ttl(run_dir)
    modes = mode_costs(rest, prices, ttl, "1h" if ttl == "1h" else "5m")  # the rest's cache, in either mode
    figures["fit"] = {"output_per_item": f"{smear * a:.3g} x input^{b:.2f}",
                      "input_billed_per_estimated": round(input_ratio, 3), "cached_prefix_billed": prefix}
    figures["extrapolated"] = {
        name: {"cost_usd": None if m.cost_usd is None else round(cost + m.cost_usd, 4),
               "cost_range_usd": None if m.cost_range is None else [round(cost + m.cost_range[0], 4), round(cost + m.cost_range[1], 4)],
               "expected_seconds": round(m.seconds)}
        for name, m in modes.items() if m.cost_usd is not None
    }
    figures["rest"] = {"items": rest.requests, "input_tokens": rest.input_tokens, "output_tokens": rest.output_tokens}
    return figures


def _rest_ttl(run_dir: Path) -> str | None:
    """The cache TTL the rest's requests carry ("5m", "1h"), None when they carry none."""
    with open(run_dir / REST_FILE, "rb") as fh:
        first = fh.readline()
    if not first:
        return None
    for segment in request_segments(json.loads(first)["params"]):
        if segment.cache_ttl:
            return segment.cache_ttl
    return None


def mode_key(mode: str, run_dir: Path) -> str:
    """The extrapolation row that describes the rest as the run will send it (cached or not)."""
    return f"{mode}_cached" if _rest_ttl(run_dir) else mode


def pilot_step(run_dir: Path, n: int, mode: str, pilot_only: bool, max_cost: float | None, run_direct_pilot,
               merge, progress: Progress) -> PilotOutcome:
    """Run (or resume) the pilot of `run_dir` and decide whether `run` goes on in `mode`.

    `run_direct_pilot(run_dir, requests_file)` sends a requests file through the direct executor;
    `merge(run_dir)` merges and reports, returning the merge summary (both passed in by the pipeline).
    """
    run_dir = Path(run_dir)
    state_path = run_dir / "pilot.json"
    state = _read_state(state_path)
    if state is None or not state.get("ids"):
        with run_lock(run_dir):
            ids = select_pilot(run_dir / "requests.jsonl", n)
            rest = _split(run_dir, set(ids))
            state = {"ids": ids, "rest": rest, "figures": None}
            atomic_write_json(state_path, state)  # journalled before anything is sent
    ids = set(state["ids"])
    if not _split_intact(run_dir, ids, int(state["rest"])):
        # Both files derive from requests.jsonl and the recorded ids: a damaged or deleted one is written again,
        # the same as before, rather than stopping the run (or sending a damaged line).
        with run_lock(run_dir):
            _split(run_dir, ids)
    # A pilot that answered nothing measured nothing: typed again, it sends its unanswered items again
    # (errors are not billed) rather than carrying an empty measurement forward.
    if state.get("figures") is None or not state["figures"].get("answered"):
        with run_lock(run_dir):
            todo = _write_todo(run_dir, ids)
        if todo:
            progress.stage(f"pilot: {todo} of {len(ids)} items through the direct API")
            run_direct_pilot(run_dir, run_dir / TODO_FILE)
        merged = merge(run_dir)
        statuses = {}
        with open(run_dir / "merged.jsonl", "rb") as fh:
            for line in fh:
                record = json.loads(line)
                if record.get("custom_id") in ids:
                    statuses[record["custom_id"]] = record.get("status")
        with run_lock(run_dir):
            state["figures"] = measure(run_dir, ids, statuses)
            state["merged"] = merged.get("files", {}).get("merged")
            atomic_write_json(state_path, state)
    figures = state["figures"]
    key = mode_key(mode, run_dir)
    if state.get("mode_key") != key:  # the row the run continues in, for the report
        with run_lock(run_dir):
            state["mode_key"] = key
            atomic_write_json(state_path, state)
    chosen = (figures.get("extrapolated") or {}).get(key) or {}
    receipt = {**figures, "mode": key, "whole_job": chosen}
    stop = None
    if not figures.get("answered"):
        # Nothing to extrapolate from, so nothing bounds the rest's cost (--max-cost included); the rest would
        # most likely fail as the pilot did.
        stop = "no pilot item answered"
        receipt["why"] = ("none of the pilot's items was answered (merged.jsonl and report.md give their errors): "
                          "fix the cause, then type the same command again to send them again")
    elif pilot_only:
        stop = "--pilot-only"
    elif max_cost is not None and chosen.get("cost_usd") is not None and chosen["cost_usd"] > max_cost:
        stop = "max_cost"
        receipt["why"] = f"the whole job is extrapolated at ${chosen['cost_usd']:.4f} in {key}, above --max-cost {max_cost}"
    if stop:
        # The pilot's merge was the journal's last event, which would make the run look finished to a
        # `run` typed again without --run (rundir.lookup.is_finished): the stop says the rest is still to do.
        with run_lock(run_dir):
            journal(run_dir, "pilot_stopped", reason=stop, rest=int(state["rest"]))
    return PilotOutcome(receipt, stop, int(state["rest"]))


def _is_state(state: Any) -> bool:
    """Whether `state` has the shape `pilot_step` writes: ids (strings), rest (a count), figures (None or an
    object whose `extrapolated` is None or holds one object per mode)."""
    if not isinstance(state, dict) or not isinstance(state.get("rest"), int):
        return False
    ids, figures = state.get("ids"), state.get("figures")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return False
    if figures is None:
        return True
    rows = figures.get("extrapolated") if isinstance(figures, dict) else "not an object"
    return rows is None or (isinstance(rows, dict) and all(isinstance(v, dict) for v in rows.values()))


def _read_state(path: Path) -> dict | None:
    """pilot.json, None when there is none; a file of another shape is an Error, not a traceback."""
    if not path.exists():
        return None
    try:
        state = read_json(path, "pilot.json")
    except BatchpilotError as exc:  # the file's JSON is nobody's to fix by hand: the way out is the one below
        state = exc
    if not _is_state(state):
        detail = f": {state.message}" if isinstance(state, BatchpilotError) else ""
        raise BatchpilotError(f"{path} is not a pilot record batchpilot wrote (ids, rest, figures){detail}",
                              "delete pilot.json and type the run command again with the same --pilot N: the same items "
                              "are picked and measured from their recorded results, none answered is sent again")
    return state


def plan_rest_round(run_dir: Path) -> None:
    """Batch mode after a pilot: round 1 is the rest file (the pilot items are not submitted again)."""
    # Imported here: only batch mode needs the batch journal.
    from batchpilot.executors.batch.state import load_state
    from batchpilot.executors.batch.submit import plan_round

    with run_lock(run_dir):
        if 1 not in load_state(run_dir).rounds:
            plan_round(run_dir, 1, REST_FILE)
