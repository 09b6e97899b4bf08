"""Bad input to every command: an `Error:` and a `Hint:` on stderr, exit 1 or 2, no traceback, and the run
directory unchanged (every file hashed before and after) or, where the command legitimately recorded
something first, still resumable: the correct command afterwards succeeds.

Counts: 51 cases (the `CASES` table), over all 18 commands — plan, prepare, run, submit, status, fetch,
cancel, retry, batches, direct, fanout, collect, headless, merge, report, templates, emulate, demo:
malformed and non-UTF-8 item files, huge items, bad ids, bad templates and schemas, a run directory edited
by hand (requests.jsonl cut mid-line, run.json damaged, results.jsonl and journal.jsonl with a garbage
middle line, items.jsonl cut mid-line), no API key without --emulate, a wrong base URL (a server that is not
the API), a port with nothing listening, bad options and values.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from conftest import closed_port
from reliability.harness import assert_error_hint, tree_hashes, write_items

RUN = "job"


def prepared(bp, mode: str = "batch", n: int = 3) -> Path:
    write_items(Path("items.jsonl"), n)
    r = bp("prepare", "-t", "code-review", "-i", "items.jsonl", "--run", RUN, "--mode", mode)
    assert r.code == 0, r.stderr
    return Path(RUN)


def submitted(bp) -> Path:
    run = prepared(bp)
    assert bp("submit", run, "--emulate").code == 0
    return run


def ended(bp) -> Path:
    run = submitted(bp)
    assert bp("status", run, "--wait", "--emulate").code == 0
    return run


def fetched(bp) -> Path:
    run = submitted(bp)
    assert bp("status", run, "--wait", "--emulate").code == 0
    assert bp("fetch", run, "--emulate").code == 0
    return run


def merged(bp) -> Path:
    run = fetched(bp)
    assert bp("merge", run).code == 0
    return run


def agents(bp) -> Path:
    run = prepared(bp, "agents")
    assert bp("fanout", run).code == 0
    return run


def cut_mid_line(name: str):
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) - 40])
    return damage


def garbage_middle_line(name: str):
    def damage(run: Path) -> None:
        lines = (run / name).read_bytes().splitlines(keepends=True)
        lines.insert(len(lines) // 2 or 1, b"}}} not json at all {{{\n")
        (run / name).write_bytes(b"".join(lines))
    return damage


def overwrite(name: str, data: bytes):
    def damage(run: Path) -> None:
        (run / name).write_bytes(data)
    return damage


def write(name: str, data: str | bytes) -> str:
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    (Path(name).write_bytes if isinstance(data, bytes) else Path(name).write_text)(data)
    return name


class NotTheApi(http.server.BaseHTTPRequestHandler):
    """A web server that is not the Anthropic API: HTML 404 for everything."""

    def _answer(self):
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def wrong_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTheApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


KEY = {"ANTHROPIC_API_KEY": "test-key"}
CLOSED = {**KEY, "ANTHROPIC_BASE_URL": "closed"}  # a port with nothing listening (filled in at run time)
WRONG = {**KEY, "ANTHROPIC_BASE_URL": "wrong"}  # an HTTP server that is not the API

# (id, setup(bp) -> run dir or None, damage(run) or None, argv (RUN is replaced), env, follow-up argv or None)
# A follow-up is the correct command; it must succeed afterwards (the run is still resumable), after the
# damaged file, if any, is put back.
CASES = [
    # plan / prepare / run: item files, templates, schemas
    ("plan-not-utf8", None, None, ["plan", "-t", "code-review", "-i", "@latin1.jsonl"], {}, None),
    ("plan-bad-jsonl", None, None, ["plan", "-t", "code-review", "-i", "@bad.jsonl"], {}, None),
    ("plan-count-tokens-closed-port", None, None, ["plan", "-t", "code-review", "-i", "@ok.jsonl", "--count-tokens"], CLOSED, None),
    ("prepare-huge-item", None, None, ["prepare", "-t", "code-review", "-i", "@huge.jsonl", "--run", RUN], {}, None),
    ("prepare-bad-id-slash", None, None, ["prepare", "-t", "code-review", "-i", "@badid.jsonl", "--run", RUN], {}, None),
    ("prepare-id-nul", None, None, ["prepare", "-t", "code-review", "-i", "@nulid.jsonl", "--run", RUN], {}, None),
    ("prepare-not-utf8", None, None, ["prepare", "-t", "code-review", "-i", "@latin1.jsonl", "--run", RUN], {}, None),
    ("prepare-bad-template-placeholder", None, None, ["prepare", "-t", "@tpl-placeholder", "-i", "@ok.jsonl", "--run", RUN], {}, None),
    ("prepare-bad-schema", None, None, ["prepare", "-t", "@tpl-schema", "-i", "@ok.jsonl", "--run", RUN], {}, None),
    ("prepare-schema-not-utf8", None, None, ["prepare", "-t", "@tpl-schema-latin1", "-i", "@ok.jsonl", "--run", RUN], {}, None),
    ("prepare-into-other-inputs", prepared, None, ["prepare", "-t", "code-review", "-i", "@other.jsonl", "--run", RUN], {}, None),
    ("prepare-csv-ragged", None, None, ["prepare", "-t", "code-review", "-i", "@ragged.csv", "--run", RUN], {}, None),
    ("run-no-key", None, None, ["run", "-t", "code-review", "-i", "@ok.jsonl", "--mode", "batch", "--run", RUN], {}, ["run", "-t", "code-review", "-i", "@ok.jsonl", "--mode", "batch", "--run", RUN, "--emulate"]),
    ("run-closed-port", None, None, ["run", "-t", "code-review", "-i", "@ok.jsonl", "--mode", "batch", "--run", RUN], CLOSED, ["run", "-t", "code-review", "-i", "@ok.jsonl", "--mode", "batch", "--run", RUN, "--emulate"]),
    ("run-bad-mode", None, None, ["run", "-t", "code-review", "-i", "@ok.jsonl", "--mode", "warp"], {}, None),
    # batch lifecycle
    ("submit-no-key", prepared, None, ["submit", RUN], {}, ["submit", RUN, "--emulate"]),
    ("submit-closed-port", prepared, None, ["submit", RUN], CLOSED, ["submit", RUN, "--emulate"]),
    ("submit-wrong-base-url", prepared, None, ["submit", RUN], WRONG, ["submit", RUN, "--emulate"]),
    ("submit-requests-cut-mid-line", prepared, cut_mid_line("requests.jsonl"), ["submit", RUN, "--emulate"], {}, None),
    ("submit-run-json-damaged", prepared, overwrite("run.json", b'{"format_version": 1, "mod'), ["submit", RUN, "--emulate"], {}, None),
    ("submit-not-a-run", None, None, ["submit", "nowhere", "--emulate"], {}, None),
    # An emulated run remembers it (no key needed after its first command: test_claude_code.py); a run of
    # another mode refuses the batch commands.
    ("status-agents-run", agents, None, ["status", RUN], {}, None),
    ("status-journal-garbage", submitted, garbage_middle_line("journal.jsonl"), ["status", RUN, "--emulate"], {}, None),
    ("status-not-submitted", prepared, None, ["status", RUN, "--emulate"], {}, None),
    ("fetch-agents-run", agents, None, ["fetch", RUN, "--emulate"], {}, None),
    ("fetch-not-a-run", None, None, ["fetch", "nowhere", "--emulate"], {}, None),
    ("cancel-agents-run", agents, None, ["cancel", RUN], {}, None),
    ("submit-agents-run", agents, None, ["submit", RUN, "--emulate"], {}, None),
    ("retry-agents-run", agents, None, ["retry", RUN], {}, None),
    ("runs-bad-flag", None, None, ["runs", "--unfinshed"], {}, None),
    ("cancel-run-json-not-object", submitted, overwrite("run.json", b"[1, 2]\n"), ["cancel", RUN, "--emulate"], {}, None),
    ("retry-bad-only", fetched, None, ["retry", RUN, "--only", "everything", "--emulate"], {}, None),
    ("retry-not-submitted", prepared, None, ["retry", RUN, "--emulate"], {}, None),
    ("retry-results-garbage", fetched, garbage_middle_line("results.jsonl"), ["retry", RUN, "--emulate"], {}, None),
    ("batches-no-key", None, None, ["batches"], {}, None),
    ("batches-closed-port", None, None, ["batches"], CLOSED, None),
    # direct
    ("direct-no-key", lambda bp: prepared(bp, "direct"), None, ["direct", RUN], {}, ["direct", RUN, "--emulate"]),
    ("direct-closed-port", lambda bp: prepared(bp, "direct"), None, ["direct", RUN], CLOSED, ["direct", RUN, "--emulate"]),
    ("direct-requests-garbage", lambda bp: prepared(bp, "direct"), garbage_middle_line("requests.jsonl"), ["direct", RUN, "--emulate"], {}, ["direct", RUN, "--emulate"]),
    ("direct-fault-spec", lambda bp: prepared(bp, "direct"), None, ["direct", RUN, "--emulate", "--emulate-fault", "meteor=1"], {}, None),
    # agents / headless
    ("fanout-bad-model", prepared, None, ["fanout", RUN, "--subagent-model", "gpt"], {}, None),
    ("fanout-items-cut-mid-line", prepared, cut_mid_line("items.jsonl"), ["fanout", RUN], {}, ["fanout", RUN]),
    ("collect-not-a-run", None, None, ["collect", "nowhere"], {}, None),
    ("collect-journal-garbage", agents, garbage_middle_line("journal.jsonl"), ["collect", RUN], {}, None),
    ("headless-missing-claude", prepared, None, ["headless", RUN, "--claude", "./no-such-claude"], {}, None),
    # merge / report
    ("merge-results-garbage", fetched, garbage_middle_line("results.jsonl"), ["merge", RUN], {}, None),
    ("merge-items-cut-mid-line", fetched, cut_mid_line("items.jsonl"), ["merge", RUN], {}, None),
    ("merge-schema-damaged", fetched, overwrite("schema.json", b"{\"type\": "), ["merge", RUN], {}, None),
    ("report-summary-damaged", merged, overwrite("summary.json", b"\xff\xfe garbage"), ["report", RUN], {}, None),
    ("report-not-a-run", None, None, ["report", "nowhere"], {}, None),
    # templates / emulate / demo
    ("templates-show-unknown", None, None, ["templates", "show", "no-such-template"], {}, None),
    ("templates-init-escape", None, None, ["templates", "init", "../escape"], {}, None),
    ("emulate-bad-fault", None, None, ["emulate", "--fault", "kind=meteor"], {}, None),
    ("demo-run-is-a-file", None, None, ["demo", "--run", "@ok.jsonl"], {}, None),
]


def fixtures() -> None:
    write("huge.jsonl", json.dumps({"id": "big", "content": "x" * (600 * 1024)}) + "\n")
    write("ok.jsonl", '{"id": "a", "content": "x = 1"}\n{"id": "b", "content": "y = 2"}\n')
    write("other.jsonl", '{"id": "c", "content": "z = 3"}\n')
    write("latin1.jsonl", '{"id": "a", "content": "caf\xe9"}\n'.encode("latin-1"))
    write("bad.jsonl", '{"id": "a", "content": "x"}\n{"id": "b", "content": \n')
    write("badid.jsonl", json.dumps({"custom_id": "../../etc/passwd", "content": "x"}) + "\n")
    write("nulid.jsonl", json.dumps({"custom_id": "a\u0000b", "content": "x"}) + "\n")
    write("ragged.csv", "id,content\n1,a,b\n")
    from batchpilot.prepare.templates import TEMPLATES_DIR

    for name, edit in (("tpl-placeholder", lambda d: (d / "user.md").write_text("{{item.content}} {{ nope.x }}\n")),
                       ("tpl-schema", lambda d: (d / "schema.json").write_text('{"type": "object", "properties": {"a": {"type": 7}}}')),
                       ("tpl-schema-latin1", lambda d: (d / "schema.json").write_bytes('{"title": "caf\xe9"}'.encode("latin-1")))):
        shutil.copytree(TEMPLATES_DIR / "code-review", name)
        edit(Path(name))


def resolve(argv: list[str]) -> list[str]:
    return [a[1:] if a.startswith("@") else a for a in argv]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(bp, monkeypatch, wrong_server, case):
    case_id, setup, damage, argv, env, follow = case
    fixtures()
    run = setup(bp) if setup else None
    originals = {p: p.read_bytes() for p in run.iterdir() if p.is_file()} if damage else {}
    if damage:
        damage(run)
    for key, value in env.items():
        value = {"closed": f"http://127.0.0.1:{closed_port()}", "wrong": wrong_server}.get(value, value)
        monkeypatch.setenv(key, value)
    before = tree_hashes(Path(RUN)) if Path(RUN).exists() else None
    r = bp(*resolve(argv))
    assert_error_hint(r.code, r.stderr, r.stdout)
    assert r.stdout.strip() == "" or r.receipt is None or "next" in r.receipt
    after = tree_hashes(Path(RUN)) if Path(RUN).exists() else None
    if follow is None:
        assert after == before, f"{case_id}: the run directory changed"
    else:
        for key in env:
            monkeypatch.delenv(key, raising=False)
        for path, data in originals.items():
            if path.name in ("requests.jsonl", "items.jsonl", "run.json", "schema.json"):
                path.write_bytes(data)
        again = bp(*resolve(follow))
        assert again.code == 0, f"{case_id}: the follow-up failed\n{again.stderr[-2000:]}"


def test_every_command_has_a_bad_input_case():
    from batchpilot.cli.main import COMMANDS

    covered = {c[3][0] for c in CASES}
    assert covered >= set(COMMANDS), set(COMMANDS) - covered
    assert len(CASES) >= 30
