"""report: report.md, and report.html rendered by headless Chromium — tables built, sorting, no script injection."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from batchpilot.core.files import append_jsonl
from batchpilot.report.markdown import write_report

try:  # run from the repository root or from tests/
    from tests.test_merge import VALID, prepare_run
except ImportError:
    from test_merge import VALID, prepare_run

TITLE = "batchpilot report: findings-review"
PAYLOADS = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">",
    "</script><script>document.body.setAttribute('data-pwned','breakout')</script>",
    "<svg onload=\"document.body.setAttribute('data-pwned','svg')\"></svg>",
    "\u2028<!--<script>",
]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium() -> str:
    """Chromium's path; in CI a missing browser fails the test, elsewhere it skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (Debian/Ubuntu: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def browse(page: Path, tmp_path: Path, fragment: str = "", screenshot: Path | None = None) -> str:
    """The DOM after the page's scripts ran (or, with `screenshot`, a PNG of the page)."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    args = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000"]
    if screenshot:
        args += [f"--screenshot={screenshot}", "--window-size=1280,900"]
    else:
        args.append("--dump-dom")
    out = subprocess.run(args + [page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class Tables(HTMLParser):
    """Rows of each <table id=...> body, as lists of cell texts; plus body attributes and the title."""

    def __init__(self, dom: str):
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.body: dict[str, str | None] = {}
        self.title = ""
        self.images = 0
        self._table = self._cell = None
        self._in_body = self._in_title = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "img":
            self.images += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "table":
            self._table = attrs.get("id")
        elif tag == "tbody" and self._table:
            self._in_body = True
            self.rows[self._table] = []
        elif tag == "tr" and self._in_body:
            self.rows[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """A run with ok, invalid, errored and missing items, hostile text in outputs and sources; reported."""
    base = tmp_path_factory.mktemp("report")
    ids = ["alpha", "beta", "gamma", "delta", "hostile", "broken", "overload", "nothing"]
    run = prepare_run(base, "json_schema", ids)
    # hostile text in an item's source too: sources are file paths and record positions, i.e. user data
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    items[4]["source"] = PAYLOADS[1]
    (run / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    finding = VALID["findings"][0]
    outputs = {
        "alpha": {"summary": "Alpha.", "findings": [dict(finding, severity="low", line_start=40), dict(finding, severity="critical", line_start=7)]},
        "beta": {"summary": "Beta.", "findings": [dict(finding, severity="medium", line_start=100)]},
        "gamma": {"summary": "Gamma.", "findings": [dict(finding, severity="info", line_start=2), dict(finding, severity="high", line_start=9)]},
        "delta": {"summary": "Delta.", "findings": []},
        "hostile": {"summary": " ".join(PAYLOADS), "findings": [dict(finding, file=PAYLOADS[0], message=PAYLOADS[1],
                                                                        suggestion=PAYLOADS[2], severity="high", line_start=1)]},
    }
    usage = {"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 4000, "cache_creation_input_tokens": 0}
    records = [{"custom_id": cid, "attempt": 1, "mode": "batch", "at": "2026-11-28T10:00:00Z", "result": {"type": "succeeded", "message": {
        "model": "claude-sonnet-5", "content": [{"type": "text", "text": json.dumps(out)}], "stop_reason": "end_turn", "usage": usage}}}
        for cid, out in outputs.items()]
    records.append({"custom_id": "broken", "attempt": 1, "mode": "batch", "result": {"type": "succeeded", "message": {
        "content": [{"type": "text", "text": '{"summary": "' + PAYLOADS[3]}], "stop_reason": "max_tokens", "usage": usage}}})
    records.append({"custom_id": "overload", "attempt": 1, "mode": "batch", "at": "2026-11-28T11:00:00Z", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded " + PAYLOADS[0]}}}})
    append_jsonl(run / "results.jsonl", records)
    files = write_report(run)
    return run, files


def test_report_files_and_markdown(report_run):
    run, files = report_run
    assert files == {"report.md": str(run / "report.md"), "report.html": str(run / "report.html")}
    md = (run / "report.md").read_text()
    for heading in ("# Batch report: findings-review", "## Status", "## Cost and tokens", "## Findings: 6", "## Failures: 3"):
        assert heading in md
    assert "| ok | 5 |" in md and "| critical | 1 |" in md and "saved by batch" in md
    assert "<script>" not in md and "<img" not in md  # hostile text is escaped in Markdown too
    top = md.split("### Top findings (6 of 6)", 1)[1].split("\n## ", 1)[0]
    assert [line.split(" | ")[1] for line in top.strip().splitlines()[2:]] == ["critical", "high", "high", "medium", "low", "info"]
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", md) and "UTC" in md  # readable times: no microseconds
    assert "Emulated" not in md and "calls itself" not in md and "this report with" not in md
    # no pilot, and this run.json (written by hand, as an older run's) records no estimate: nothing to compare
    assert "Estimate vs billed" not in md and "Estimate vs billed" not in (run / "report.html").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"] == {"ok": 5, "invalid": 1, "errored": 1, "expired": 0, "canceled": 0, "missing": 1}


def test_html_is_self_contained_and_escaped(report_run):
    run, _ = report_run
    page = (run / "report.html").read_text()
    data_start = page.index('<script type="application/json"')
    template_part = page[:data_start] + page[page.index("</script>", data_start):]
    for needle in ("<link", "@import", "url(", 'src="http', "src='http", 'href="http', "<iframe", "fetch(", "XMLHttpRequest"):
        assert needle not in template_part
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # the only <script> openings are the page's own two
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "innerHTML" not in page
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page  # the failure list, escaped


def test_html_renders_tables_in_chromium(report_run, tmp_path):
    run, _ = report_run
    dom = Tables(browse(run / "report.html", tmp_path))
    assert dom.body.get("data-rendered") == "yes"  # the page's script ran
    assert [r[0] for r in dom.rows["items-table"]] == ["alpha", "beta", "gamma", "delta", "hostile", "broken", "overload", "nothing"]
    assert len(dom.rows["findings-table"]) == 6
    # Unsorted by the reader, findings come most severe first (then file, then line), not in item order.
    assert [r[4] for r in dom.rows["findings-table"]] == ["critical", "high", "high", "medium", "low", "info"]
    assert dom.title == TITLE


@pytest.mark.parametrize("fragment, column, expected", [
    ("#sort=severity", 4, ["critical", "high", "high", "medium", "low", "info"]),
    ("#sort=severity:desc", 4, ["info", "low", "medium", "high", "high", "critical"]),
    ("#sort=line_start", 2, ["1", "2", "7", "9", "40", "100"]),
])
def test_html_sorts_findings_from_the_fragment(report_run, tmp_path, fragment, column, expected):
    run, _ = report_run
    rows = Tables(browse(run / "report.html", tmp_path, fragment)).rows["findings-table"]
    assert [r[column] for r in rows] == expected


def test_html_filters_from_the_fragment(report_run, tmp_path):
    run, _ = report_run
    page = browse(run / "report.html", tmp_path, "#status=invalid&q=broken")
    dom = Tables(page)
    assert [r[0] for r in dom.rows["items-table"]] == ["broken"]
    assert "filtered by the link: status=invalid" in page  # a filter set by the link is shown, not hidden


def test_hostile_output_executes_nothing(report_run, tmp_path):
    run, _ = report_run
    html_dom = browse(run / "report.html", tmp_path)
    dom = Tables(html_dom)
    assert dom.body.get("data-rendered") == "yes"
    assert "data-pwned" not in dom.body and "data-pwned=" not in html_dom.split("<body", 1)[1].split(">", 1)[0]
    assert dom.title == TITLE
    assert dom.images == 0 and not re.search(r"<svg\b", html_dom)
    hostile = next(r for r in dom.rows["items-table"] if r[0] == "hostile")
    assert PAYLOADS[1] in hostile[2] and PAYLOADS[0] in hostile[3]  # shown as text, verbatim
    finding = next(r for r in dom.rows["findings-table"] if r[0] == "hostile")
    assert finding[1] == PAYLOADS[0] and PAYLOADS[1] in finding


def test_csp_blocks_an_injection_that_got_past_escaping(report_run, tmp_path):
    """Defence in depth: a raw handler pasted into the page does not run; without the policy it would."""
    run, _ = report_run
    page = (run / "report.html").read_text()
    injected = page.replace("</body>", "<img src=x onerror=\"document.body.setAttribute('data-pwned','yes')\"></body>")
    with_policy, without_policy = tmp_path / "with.html", tmp_path / "without.html"
    with_policy.write_text(injected)
    without_policy.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", injected))
    assert Tables(browse(without_policy, tmp_path)).body.get("data-pwned") == "yes"  # the probe works
    guarded = Tables(browse(with_policy, tmp_path))
    assert "data-pwned" not in guarded.body and guarded.body.get("data-rendered") == "yes"


def test_screenshot(report_run, tmp_path):
    run, _ = report_run
    png = tmp_path / "report.png"
    browse(run / "report.html", tmp_path, "#sort=severity", screenshot=png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    print(f"screenshot: {png}")


def test_report_merges_first_when_results_are_newer(bp, tmp_path):
    run = prepare_run(tmp_path, "json_schema", ["a", "b"])
    append_jsonl(run / "results.jsonl", [{"custom_id": "a", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    result = bp("report", run)
    assert result.code == 0, result.stderr
    assert result.receipt["command"] == "report" and result.receipt["counts"]["ok"] == 1
    assert Path(result.receipt["files"]["report.html"]).exists()
    assert bp("merge", run, "--format", "csv").code == 0
    os.utime(run / "summary.json", (1, 1))
    append_jsonl(run / "results.jsonl", [{"custom_id": "b", "attempt": 1, "result": {"type": "succeeded", "output": VALID}}])
    assert bp("report", run).receipt["counts"]["ok"] == 2
    assert "b,ok," in (run / "merged.csv").read_text()  # the exports were refreshed too
    assert "Next: `batchpilot report" not in (run / "report.md").read_text()


def test_report_of_a_non_run_is_an_error(bp, tmp_path):
    result = bp("report", tmp_path / "nope")
    assert result.code == 1 and "is not a run directory" in result.stderr and "Hint:" in result.stderr
