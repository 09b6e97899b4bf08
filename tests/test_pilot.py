"""`run --pilot N`: the pilot items go through the direct API once, the receipt carries their measured
figures and the whole job's extrapolation, and the rest runs in the chosen mode without them."""

from __future__ import annotations

import html
import json
import random
import re
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import command

WORDS = ("refund", "login", "broken", "great", "slow", "charge", "error", "app", "invoice", "crash")


def write_items(n: int) -> Path:
    path = Path("items.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            r = random.Random(i)
            text = " ".join(r.choice(WORDS) for _ in range(r.randint(5, 300)))
            fh.write(json.dumps({"id": f"t{i:03d}", "text": text}) + "\n")
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_pilot_is_measured_extrapolated_and_not_redone(bp):
    items = write_items(60)
    args = ("run", "--template", "classify", "--items", items, "--var", "labels=billing,bug,other",
            "--mode", "batch", "--emulate", "--run", "r", "--pilot", "8")
    first = bp(*args, "--pilot-only")
    assert first.code == 0, first.stderr
    pilot = first.receipt["pilot"]
    assert first.receipt["stopped"] == "after the pilot (--pilot-only)"
    # runnable as printed from anywhere; the run remembers it is emulated, so no --emulate is needed
    # (from this directory: the items spelt as typed are the run's items; spelt absolute, their sources differ)
    assert first.receipt["next"] == f"cd {shlex.quote(os.getcwd())} && " + command(
        "run", "--template", "classify", "--items", str(items), "--mode", "batch", "--run", Path("r"),
        "--var", "labels=billing,bug,other")
    assert pilot["items"] == pilot["answered"] == 8 and pilot["invalid_share"] == 0
    assert pilot["billed_tokens"]["output_tokens"] > 0 and pilot["billed_cost_usd"] > 0
    whole = pilot["whole_job"]
    assert whole["cost_range_usd"][0] <= whole["cost_usd"] <= whole["cost_range_usd"][1]
    assert set(pilot["extrapolated"]) >= {"direct", "batch"} and pilot["rest"]["items"] == 52
    sizes = sorted(len(r["text"]) for r in records(items))
    chosen = {json.loads(line)["custom_id"] for line in Path("r/rounds/pilot.jsonl").read_text().splitlines()}
    lengths = {r["id"]: len(r["text"]) for r in records(items)}
    assert min(lengths[c] for c in chosen) == sizes[0] and max(lengths[c] for c in chosen) == sizes[-1]  # stratified
    assert {r["custom_id"] for r in records(Path("r/results.jsonl"))} == chosen  # only the pilot was sent

    capped = bp(*args, "--max-cost", "0.000001")  # above --max-cost: stops after the (recorded) pilot
    assert capped.code == 0 and capped.receipt["stopped"] == "after the pilot (max_cost)", capped.receipt
    assert "above --max-cost" in capped.receipt["pilot"]["why"]
    assert len(records(Path("r/results.jsonl"))) == 8  # nothing sent again

    again = bp(*args)  # the same command without --pilot-only continues with the rest
    assert again.code == 0, again.stderr
    assert {k: n for k, n in again.receipt["counts"].items() if n} == {"ok": 60}
    assert again.receipt["pilot"]["billed_tokens"] == pilot["billed_tokens"]  # measured once, carried over
    sent = [r["custom_id"] for r in records(Path("r/results.jsonl"))]
    assert len(sent) == len(set(sent)) == 60  # each item answered once: no pilot item redone by the batch
    assert {r["custom_id"] for r in records(Path("r/results.jsonl")) if r["mode"] == "direct"} == chosen
    billed = json.loads(Path("r/summary.json").read_text())["cost_usd"]
    assert abs(whole["cost_usd"] / billed - 1) < 0.5  # the tight figure is a bench/ row; here: the same order
    report = Path("r/report.md").read_text()
    assert f"| estimate after the pilot, {pilot['mode']} (range) | ${whole['cost_usd']:,.4f}" in report


def test_a_pilot_refuses_modes_it_cannot_continue_in(bp):
    items = write_items(3)
    r = bp("run", "--template", "classify", "--items", items, "--var", "labels=a,b", "--mode", "agents",
           "--pilot", "2", "--run", "r")
    assert r.code == 1 and "Error: --pilot" in r.stderr and "Hint:" in r.stderr


def test_a_run_stopped_after_its_pilot_resumes_when_typed_again(bp):
    items = write_items(12)
    args = ("run", "--template", "classify", "--items", items, "--var", "labels=billing,bug,other",
            "--mode", "batch", "--emulate", "--pilot", "4")  # no --run: the run is found again by its job
    first = bp(*args, "--pilot-only")
    assert first.code == 0 and first.receipt["stopped"] == "after the pilot (--pilot-only)", first.stderr
    again = bp(*args)  # typed again: not "already finished" with the rest missing
    assert again.code == 0, again.stderr
    assert again.receipt["run"] == first.receipt["run"] and not again.receipt.get("finished")
    assert {k: n for k, n in again.receipt["counts"].items() if n} == {"ok": 12}
    sent = [r["custom_id"] for r in records(Path(first.receipt["run"]) / "results.jsonl")]
    assert len(sent) == len(set(sent)) == 12  # the pilot's 4 were not sent again
    third = bp(*args)  # and once finished, typed again it is reported, not paid for again
    assert third.code == 0 and third.receipt["finished"] is True and third.receipt["run"] == first.receipt["run"]


def test_a_pilot_refuses_file_uploads_before_preparing(bp):
    import media_samples as samples

    samples.inbox(Path("inbox"))
    r = bp("run", "-t", "summarize", "-i", "inbox/**/*", "--mode", "batch", "--emulate", "--upload", "files",
           "--pilot", "2", "--run", "r")
    assert r.code == 1 and "Error: --pilot" in r.stderr and "Hint: run the pilot with --upload inline" in r.stderr
    assert not Path("r").exists()


def estimate_rows(page: str) -> list[tuple[str, str]]:
    """The (label, figure) rows of report.html's "Estimate vs billed" section, unescaped."""
    section = page.split('<section id="estimate">', 1)[1].split("</section>", 1)[0]
    return [(html.unescape(a), html.unescape(b)) for a, b in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", section)]


def cache_row(run: str) -> dict[str, str]:
    """The report's row of run.json's cache choice: the TTL and why, as the receipts print them."""
    cache = json.loads(Path(run, "run.json").read_text())["cache"]
    return {"prompt cache for the shared instructions": f"{cache['ttl']}: {cache['why']}"}


def narrow_overflow(page: Path, tmp_path: Path, width: int = 320) -> tuple[int, int, int]:
    """(viewport width, page width, right edge of the estimate section) of `page` shown `width` px wide.

    The page is framed by `srcdoc` (same origin, so the frame can be measured; its own policy still applies):
    headless Chromium keeps windows at least ~500 px wide, a frame can be narrower."""
    from test_report import CHROMIUM_FLAGS, chromium

    probe = tmp_path / "narrow.html"
    probe.write_text(f'<!DOCTYPE html><html><body><iframe id="f" width="{width}" height="800" srcdoc="'
                     f'{html.escape(page.read_text(), quote=True)}"></iframe><script>document.getElementById("f")'
                     '.addEventListener("load",function(){var d=this.contentDocument,e=d.documentElement,'
                     's=d.getElementById("estimate");document.body.setAttribute("data-width",[e.clientWidth,'
                     'e.scrollWidth,s?Math.ceil(s.getBoundingClientRect().right):-1].join(" "));});</script></body></html>')
    args = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=3000",
            "--dump-dom", probe.resolve().as_uri()]
    out = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'data-width="(\d+) (\d+) (-?\d+)"', out.stdout)
    assert found, out.stdout[-2000:]
    return tuple(int(n) for n in found.groups())


def test_the_report_shows_the_pilots_estimate_against_the_bill(bp, tmp_path):
    items = write_items(12)
    args = ("run", "--template", "classify", "--items", items, "--var", "labels=billing,bug,other",
            "--mode", "batch", "--emulate", "--run", "r", "--pilot", "4")
    first = bp(*args, "--pilot-only")
    assert first.code == 0, first.stderr
    rows = dict(estimate_rows(Path("r/report.html").read_text()))
    assert "billed so far (8 of 12 items without a result)" in rows  # stopped after the pilot: not the whole bill

    again = bp(*args)
    assert again.code == 0, again.stderr
    pilot = json.loads(Path("r/pilot.json").read_text())["figures"]
    summary = json.loads(Path("r/summary.json").read_text())
    key = again.receipt["pilot"]["mode"]  # the extrapolation row of the mode the run continued in
    whole = pilot["extrapolated"][key]
    low, high = whole["cost_range_usd"]
    rows = estimate_rows(Path("r/report.html").read_text())
    tokens = pilot["billed_tokens"]
    before = json.loads(Path("r/run.json").read_text())["estimate"]  # plan's figure, recorded when prepared
    assert dict(rows) == {
        **cache_row("r"),  # the choice the receipts printed, which both estimates assumed
        "pilot items answered": "4 of 4",
        "pilot billed cost": f"${pilot['billed_cost_usd']:,.4f}",
        "pilot tokens in / out": f"{tokens['input_tokens']:,} / {tokens['output_tokens']:,}",
        "pilot cache read / written": f"{pilot['cache']['read']:,} / {pilot['cache']['written']:,}",
        "pilot invalid share": f"{100 * pilot['invalid_share']:.1f}%",
        f"estimate when prepared, {before['mode']} (range)":
            f"${before['cost_usd']:,.4f} (${before['cost_range_usd'][0]:,.4f}–${before['cost_range_usd'][1]:,.4f})",
        f"estimate after the pilot, {key} (range)": f"${whole['cost_usd']:,.4f} (${low:,.4f}–${high:,.4f})",
        "billed, whole run": f"${summary['cost_usd']:,.4f}",
        "billed / estimate": f"{summary['cost_usd'] / whole['cost_usd']:.2f}",
    }
    md = Path("r/report.md").read_text()
    assert "## Estimate vs billed" in md
    assert all(f"| {label} | {figure} |" in md for label, figure in rows)  # report.md says the same figures

    # pilot.json's mode_key names the row; whatever it holds is shown as text, and a damaged figure as unknown
    state = json.loads(Path("r/pilot.json").read_text())
    Path("r/pilot.json").write_text(json.dumps({**state, "mode_key": "<img src=x onerror=alert(1)>",
                                                "figures": {**state["figures"], "billed_tokens": "damaged"}}))
    assert bp("report", "r").code == 0
    page = Path("r/report.html").read_text()
    assert "estimate after the pilot, &lt;img src=x onerror=alert(1)&gt; (range)" in page and "<img" not in page
    assert dict(estimate_rows(page))["pilot tokens in / out"] == "unknown / unknown"

    width, page_width, right = narrow_overflow(Path("r/report.html"), tmp_path)
    assert page_width <= width and 0 < right <= width, (width, page_width, right)  # no sideways scrolling on a phone


def test_a_run_without_a_pilot_reports_plans_estimate_against_the_bill(bp):
    """run.json keeps what plan printed for the job; the report sets the bill against it. A mode billed to a
    Claude Code plan has no dollar estimate, so no section."""
    items = write_items(6)
    vars_ = ("--var", "labels=billing,bug,other")
    planned = bp("plan", "--template", "classify", "--items", items, *vars_).receipt
    done = bp("run", "--template", "classify", "--items", items, *vars_, "--mode", "direct", "--emulate", "--run", "d")
    assert done.code == 0, done.stderr
    before = json.loads(Path("d/run.json").read_text())["estimate"]
    assert before["mode"] in planned["modes"] and before["cost_usd"] == planned["modes"][before["mode"]]["cost_usd"]
    assert before["cost_range_usd"] == planned["modes"][before["mode"]]["cost_range_usd"]
    assert before["output_source"] == planned["tokens"]["output_source"]
    billed = json.loads(Path("d/summary.json").read_text())["cost_usd"]
    low, high = before["cost_range_usd"]
    rows = dict(estimate_rows(Path("d/report.html").read_text()))
    assert rows == {**cache_row("d"), f"estimate when prepared, {before['mode']} (range)": f"${before['cost_usd']:,.4f} (${low:,.4f}–${high:,.4f})",
                    "billed, whole run": f"${billed:,.4f}", "billed / estimate": f"{billed / before['cost_usd']:.2f}"}
    assert all(f"| {label} | {figure} |" in Path("d/report.md").read_text() for label, figure in rows.items())

    agents = bp("prepare", "--template", "classify", "--items", items, *vars_, "--mode", "agents", "--run", "a")
    assert agents.code == 0 and "estimate" not in json.loads(Path("a/run.json").read_text())


def test_a_pilot_that_answered_nothing_stops_and_is_sent_again_when_typed_again(bp, emulator, monkeypatch):
    """Every pilot request refused: nothing to extrapolate, so nothing bounds the rest (not even --max-cost);
    the run stops instead of sending the whole job, and typed again once the cause is gone, it sends the
    pilot again, then the rest."""
    from batchpilot.emulator.behaviour.faults import FaultRule

    items = write_items(10)
    args = ("run", "--template", "classify", "--items", items, "--var", "labels=billing,bug,other",
            "--mode", "batch", "--run", "r", "--pilot", "3", "--max-cost", "5")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator(faults=[FaultRule.parse("errored")]).base_url)
    first = bp(*args)
    assert first.code == 0, first.stderr
    assert first.receipt["stopped"] == "after the pilot (no pilot item answered)", first.receipt
    assert first.receipt["pilot"]["answered"] == 0 and "fix the cause" in first.receipt["pilot"]["why"]
    pilot_ids = {r["custom_id"] for r in records(Path("r/rounds/pilot.jsonl"))}
    assert {r["custom_id"] for r in records(Path("r/results.jsonl"))} == pilot_ids  # the rest was not sent
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator(time_scale=86_400).base_url)  # the batch ends at once
    again = bp(*args)
    assert again.code == 0, again.stderr
    assert again.receipt["pilot"]["answered"] == 3 and again.receipt["pilot"]["whole_job"]["cost_usd"] > 0
    assert {k: n for k, n in again.receipt["counts"].items() if n} == {"ok": 10}


def test_a_damaged_pilot_record_is_an_error_with_a_way_out(bp):
    items = write_items(6)
    args = ("run", "--template", "classify", "--items", items, "--var", "labels=a,b", "--mode", "batch",
            "--emulate", "--run", "r", "--pilot", "2")
    assert bp(*args, "--pilot-only").code == 0
    good = Path("r/pilot.json").read_text()
    for bad in ('[1, 2]', '{"ids": 5, "figures": null, "rest": 4}', '{"ids": ["t000"], "figures": "x", "rest": 4}',
                '{"ids": ["t000"], "rest": 4, "figures": {"answered": 1, "extrapolated": "x"}}',
                '{"ids": [', b'{"ids": ["\xff"]}'):  # cut short by a full disk; not UTF-8
        (Path("r/pilot.json").write_bytes if isinstance(bad, bytes) else Path("r/pilot.json").write_text)(bad)
        r = bp(*args, "--pilot-only")
        assert r.code == 1 and "Error:" in r.stderr and "pilot.json" in r.stderr, (bad, r.stderr)
        assert "Hint: delete pilot.json" in r.stderr and "Traceback" not in r.stderr
    Path("r/pilot.json").unlink()  # the way out the hint gives: measured again, nothing sent again
    again = bp(*args, "--pilot-only")
    assert again.code == 0 and json.loads(Path("r/pilot.json").read_text())["ids"] == json.loads(good)["ids"], again.stderr
    assert len(records(Path("r/results.jsonl"))) == 2


def test_a_damaged_estimate_in_run_json_shows_unknown_in_the_report(bp):
    """run.json is the user's file: an estimate edited into a string, a negative, a number too large for a float,
    or an object shows "unknown", a tiny figure no ratio, it neither stops the report nor prints nonsense."""
    items = write_items(3)
    done = bp("run", "--template", "classify", "--items", items, "--var", "labels=bug,other", "--mode", "direct",
              "--emulate", "--run", "d")
    assert done.code == 0, done.stderr
    manifest = Path("d/run.json")
    original = json.loads(manifest.read_text())
    billed = json.loads(Path("d/summary.json").read_text())["cost_usd"]
    hostile = {"string": '"abc"', "strings": '{"mode": "direct", "cost_usd": "0.5", "cost_range_usd": "x"}',
               "negative": '{"mode": "direct", "cost_usd": -1, "cost_range_usd": [-2, -1]}',
               "huge": '{"mode": "direct", "cost_usd": 1%s, "cost_range_usd": [0, 1e308]}' % ("0" * 400),
               "tiny": '{"mode": "direct", "cost_usd": 1e-300, "cost_range_usd": [0, 1e-300]}',
               "nested": '{"mode": {"a": [1]}, "cost_usd": {"x": 1}, "output_source": {"q": 1}}'}
    for name, value in hostile.items():
        manifest.write_text(json.dumps({**original, "estimate": "@"}).replace('"@"', value))
        report = bp("report", "d")
        assert report.code == 0 and "Traceback" not in report.stderr, (name, report.stderr)
        page, md = Path("d/report.html").read_text(), Path("d/report.md").read_text()
        if name == "string":  # not an object: no estimate at all, no section
            assert 'id="estimate"' not in page and "Estimate vs billed" not in md
            continue
        rows = dict(estimate_rows(page))
        mode = "direct" if name != "nested" else "unknown"
        shown = "$0.0000 ($0.0000–$0.0000)" if name == "tiny" else "unknown"  # and no billed / estimate of 1e300
        assert rows == {**cache_row("d"), f"estimate when prepared, {mode} (range)": shown,
                        "billed, whole run": f"${billed:,.4f}"}, name
        assert "{" not in md.split("## Estimate vs billed")[1], name  # no Python repr of the object in the note


def test_direct_with_the_one_hour_cache_is_estimated_at_its_write_price(bp):
    """`--cache 1h` in direct mode writes the instructions at 2x the input price, not the 5-minute 1.25x
    (https://platform.claude.com/docs/en/build-with-claude/prompt-caching#pricing): plan and run.json's
    estimate say what the dearer cache adds to the bill."""
    items = write_items(3)
    template = Path("long-classify")  # instructions long enough for the model to cache
    shutil.copytree(Path(__file__).resolve().parents[1] / "skills" / "batch-processing" / "templates" / "classify", template)
    with open(template / "system.md", "a", encoding="utf-8") as fh:
        fh.write("\n" + "Read the whole ticket before you choose a label. " * 400)
    job = ("--template", template, "--items", items, "--var", "labels=bug,other", "--model", "claude-sonnet-4-5")
    planned, kept, billed = {}, {}, {}
    for ttl in ("5m", "1h"):
        planned[ttl] = bp("plan", *job, "--cache", ttl).receipt["modes"]["direct_cached"]["cost_usd"]
        done = bp("run", *job, "--cache", ttl, "--mode", "direct", "--emulate", "--run", ttl)
        assert done.code == 0, done.stderr
        kept[ttl] = json.loads(Path(f"{ttl}/run.json").read_text())["estimate"]["cost_usd"]
        billed[ttl] = json.loads(Path(f"{ttl}/summary.json").read_text())["cost_usd"]
    assert kept == planned
    # what the 1-hour cache adds, as a share of the 5-minute run (the local token estimate's error cancels out)
    extra_billed, extra_planned = billed["1h"] / billed["5m"] - 1, planned["1h"] / planned["5m"] - 1
    assert extra_billed > 0.2 and abs(extra_planned - extra_billed) <= 0.1 * extra_billed, (planned, billed)


def test_the_next_command_after_a_pilot_of_a_folder_runs_as_printed_from_elsewhere(bp, tmp_path):
    folder = Path("docs")
    folder.mkdir()
    for i in range(5):
        (folder / f"d{i}.txt").write_text(f"Document {i}: " + "the weather in spring " * (i + 1), encoding="utf-8")
    first = bp("run", "--template", "summarize", "--items", "docs", "--pilot", "2", "--pilot-only", "--emulate")
    assert first.code == 0 and first.receipt["stopped"] == "after the pilot (--pilot-only)", first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", first.receipt["next"]], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # the folder's items are the run's items, however the path is spelt
    rest = json.loads(done.stdout)
    assert rest["run"] == first.receipt["run"] and {k: n for k, n in rest["counts"].items() if n} == {"ok": 5}
    sent = [r["custom_id"] for r in records(Path(first.receipt["run"]) / "results.jsonl")]
    assert len(sent) == len(set(sent)) == 5  # the pilot's 2 were not sent again


def test_pilot_only_without_a_pilot_is_a_usage_error_before_anything_is_spent(bp):
    items = write_items(6)
    got = bp("run", "--template", "classify", "--items", items, "--var", "labels=billing,bug,other",
             "--mode", "batch", "--emulate", "--pilot-only")  # forgot --pilot N: must not run the whole job
    assert got.code == 2, got.stdout
    assert "Error:" in got.stderr and "--pilot-only" in got.stderr and "--pilot N" in got.stderr
    assert not Path(".batchpilot").exists()  # nothing prepared, nothing sent


def test_a_damaged_rest_file_after_a_pilot_is_written_again_and_the_run_finishes(bp):
    items = write_items(12)
    args = ("run", "--template", "classify", "--items", items, "--var", "labels=billing,bug,other",
            "--mode", "batch", "--emulate", "--run", "r", "--pilot", "4")
    assert bp(*args, "--pilot-only").code == 0
    Path("r/rounds/rest-1.jsonl").write_bytes(b'{"custom_id": "x", garbage\n\xff\xfe')  # a disk or an editor
    again = bp(*args)
    assert again.code == 0, again.stderr  # not a traceback: the file derives from requests.jsonl
    assert {k: n for k, n in again.receipt["counts"].items() if n} == {"ok": 12}
    sent = [r["custom_id"] for r in records(Path("r/results.jsonl"))]
    assert len(sent) == len(set(sent)) == 12  # the pilot's 4 were not sent again, the rest all were
