"""Documents and images as items: sniffing, page and pixel figures, limits, request blocks, costs, Files API
uploads, and agents-mode prompts. Every sample file is generated here byte by byte (tests/media_samples.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import media_samples as samples
from batchpilot.prepare import media

INBOX = "inbox/**/*"


def requests_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "requests.jsonl").read_text().splitlines()]


def attachment(line: dict) -> dict:
    return next(b for b in line["params"]["messages"][0]["content"] if b["type"] in ("document", "image"))


# --------------------------------------------------------------------------------------------- the files


@pytest.mark.parametrize("pages", [1, 5, 37, 120])
def test_pdf_pages_come_from_the_page_tree(pages):
    assert media.pdf_pages(samples.pdf(pages)) == (pages, None)


def test_encrypted_and_damaged_pdfs_say_why_they_cannot_be_read():
    pages, problem = media.pdf_pages(samples.pdf(3, encrypted=True))
    assert pages is None and "encrypted" in problem and "/Encrypt" in problem
    assert media.pdf_pages(b"%PDF-1.7\n%%EOF\n")[1].startswith("no page tree")


def test_pages_inside_a_compressed_object_stream_are_counted():
    import zlib

    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R >>", b"<< /Type /Page /Parent 2 0 R >>"]
    offsets, body = [], b""
    for o in objs:
        offsets.append(len(body))
        body += o + b" "
    header = " ".join(f"{n + 1} {off}" for n, off in enumerate(offsets)).encode() + b" "
    stream = zlib.compress(header + body)
    pdf = (b"%PDF-1.7\n5 0 obj\n<< /Type /ObjStm /N 4 /First " + str(len(header)).encode()
           + b" /Filter /FlateDecode /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
           + b"\nendstream\nendobj\n%%EOF\n")
    assert media.pdf_pages(pdf) == (2, None)


@pytest.mark.parametrize("make,kind,size", [(samples.png, "image/png", (640, 480)), (samples.jpeg, "image/jpeg", (1200, 1600)),
                                            (samples.gif, "image/gif", (32, 20))])
def test_image_type_and_size_are_read_from_the_header(make, kind, size):
    data = make(*size)
    assert media.sniff(data[:16]) == kind
    assert media.image_size(data, kind) == size


def test_image_tokens_follow_the_pixel_formula_after_downscaling():
    assert media.media_tokens("image", None, 200, 150) == 40  # 200 x 150 / 750
    assert media.media_tokens("image", None, 2000, 1000) == media.media_tokens("image", None, 1516, 758)  # scaled down
    assert media.media_tokens("image", None, 8000, 8000) <= 1534  # ~1.15 MP at most
    assert media.media_tokens("document", 5, None, None) == 5 * media.TOKENS_PER_PAGE


def test_the_extension_does_not_decide(tmp_path):
    (tmp_path / "scan.txt").write_bytes(samples.png(10, 10))
    (tmp_path / "notes.pdf").write_text("just text, not a PDF\n")
    found = media.inspect(str(tmp_path / "scan.txt"))
    assert isinstance(found, media.Media) and found.media_type == "image/png"
    assert media.sniff_file(str(tmp_path / "notes.pdf")) is None  # read as the text it is


def test_limits_name_the_limit_and_the_value(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(samples.png(8001, 2))
    refusal = media.inspect(str(big))
    assert isinstance(refusal, media.Refusal) and refusal.reason == "too_many_pixels" and "8001x2" in refusal.detail
    heavy = tmp_path / "heavy.png"
    heavy.write_bytes(samples.png(8, 8) + os.urandom(4 * 1024 * 1024))  # 5.3 MB of base64
    refusal = media.inspect(str(heavy))
    assert refusal.reason == "oversized" and "5 MB" in refusal.detail
    assert isinstance(media.inspect(str(heavy), inline=False), media.Media)  # uploaded files have no base64 limit


# ------------------------------------------------------------------------------------------ plan and run


def test_plan_counts_documents_and_images_with_their_figures_and_lists_the_skipped(bp):
    samples.inbox(Path("inbox"))
    r = bp("plan", "-t", "summarize", "-i", INBOX)
    assert r.code == 0, r.stderr
    plan = r.receipt
    assert plan["items"] == 6
    tokens = plan["tokens"]
    assert tokens["documents"] == {"items": 2, "pages": 6, "tokens": 6 * media.TOKENS_PER_PAGE}
    assert tokens["images"]["items"] == 4 and tokens["images"]["pixels"] == 64 * 48 + 2000 * 1000 + 1200 * 1600 + 32 * 32
    assert tokens["input"] == tokens["text_input"] + tokens["documents"]["tokens"] + tokens["images"]["tokens"]
    figures = {a["custom_id"]: a for a in plan["attachments"]}
    assert figures["contracts-five-pdf"]["pages"] == 5 and figures["scan-jpg"]["width"] == 1200
    assert plan["skipped"] == {"binary": 1, "too_many_pages": 1, "unreadable_pdf": 1}
    why = {Path(s["source"]).name: s["detail"] for s in plan["skipped_items"]}
    assert "120 pages > the API's 100-page limit" in why["long.pdf"] and "split" in why["long.pdf"]
    assert "encrypted" in why["locked.pdf"]
    assert "data.bin" in why


def test_run_in_batch_mode_sends_document_and_image_blocks_and_every_item_ends_ok(bp):
    samples.inbox(Path("inbox"))
    r = bp("run", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--emulate", "--run", "r")
    assert r.code == 0, r.stderr
    assert r.receipt["counts"]["ok"] == 6 and sum(r.receipt["counts"].values()) == 6
    blocks = {line["custom_id"]: attachment(line) for line in requests_of(Path("r"))}
    assert blocks["contracts-one-pdf"]["type"] == "document"
    assert blocks["contracts-one-pdf"]["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(blocks["contracts-one-pdf"]["source"]["data"]) == Path("inbox/contracts/one.pdf").read_bytes()
    assert {blocks[k]["source"]["media_type"] for k in ("shot-a-png", "scan-jpg", "anim-gif")} == {"image/png", "image/jpeg", "image/gif"}
    first = requests_of(Path("r"))[0]["params"]
    assert first["messages"][0]["content"][0]["type"] in ("document", "image")  # the default: attachment first
    assert "cache_control" in first["system"][0] and "cache_control" not in json.dumps(first["messages"])
    # The emulator counted the pages and pixels itself: the billed input covers them.
    summary = json.loads(Path("r/summary.json").read_text())
    billed = json.dumps(summary)
    assert "input" in billed
    records = [json.loads(l) for l in Path("r/results.jsonl").read_text().splitlines()]
    usage = {rec["custom_id"]: rec["result"]["message"]["usage"] for rec in records}
    assert usage["contracts-five-pdf"]["input_tokens"] >= 5 * media.TOKENS_PER_PAGE
    assert usage["anim-gif"]["input_tokens"] < media.TOKENS_PER_PAGE


def test_attachment_placeholder_puts_the_block_where_user_md_says(bp, tmp_path):
    from batchpilot.prepare.templates import TEMPLATES_DIR
    import shutil

    shutil.copytree(TEMPLATES_DIR / "summarize", "tpl")
    Path("tpl/user.md").write_text("Before the file.\n\n{{item.attachment}}\n\nAfter the file: {{item.path}}\n")
    samples.inbox(Path("inbox"))
    (Path("inbox") / "plain.txt").write_text("a text item\n")
    r = bp("prepare", "-t", "./tpl", "-i", INBOX, "--mode", "batch", "--run", "r")
    assert r.code == 0, r.stderr
    lines = {l["custom_id"]: l["params"]["messages"][0]["content"] for l in requests_of(Path("r"))}
    kinds = [b["type"] for b in lines["scan-jpg"]]
    assert kinds == ["text", "image", "text"] and lines["scan-jpg"][0]["text"] == "Before the file."
    assert isinstance(lines["plain-txt"], str) and "Before the file." in lines["plain-txt"]  # text items: no block


def test_a_request_over_32_mb_is_refused_before_any_batch_is_created(tmp_path):
    from batchpilot.core.errors import BatchpilotError
    from batchpilot.executors.batch.shards import MAX_BATCH_BYTES, plan_shards

    path = tmp_path / "requests.jsonl"
    blob = "A" * (32 * 1000 * 1000 + 10)
    path.write_text(json.dumps({"custom_id": "a", "params": {"x": 1}}) + "\n"
                    + json.dumps({"custom_id": "huge", "params": {"data": blob}}) + "\n")
    with pytest.raises(BatchpilotError) as err:
        plan_shards(path, 100, MAX_BATCH_BYTES)
    assert "huge" in str(err.value) and "32 MB" in str(err.value)


def test_file_field_attaches_the_file_a_record_names(bp):
    samples.inbox(Path("inbox"))
    Path("jobs.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "inv-1", "file": "inbox/contracts/five.pdf", "vendor": "Acme"},
        {"id": "inv-2", "file": "inbox/data.bin"},
        {"id": "inv-3", "file": "inbox/shot-a.png"}]) + "\n")
    r = bp("prepare", "-t", "summarize", "-i", "jobs.jsonl", "--file-field", "file", "--mode", "batch", "--run", "r")
    assert r.code == 0, r.stderr
    assert r.receipt["items"] == 2 and r.receipt["skipped"] == {"binary": 1}
    blocks = {l["custom_id"]: attachment(l)["type"] for l in requests_of(Path("r"))}
    assert blocks == {"inv-1": "document", "inv-3": "image"}


# ------------------------------------------------------------------------------------------- Files API


def cli(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchpilot", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("crash", ["after-upload-before-journal", "journal:3"])
def test_upload_files_killed_during_the_uploads_uploads_each_file_once_and_deletes_them_at_the_end(tmp_path, crash):
    samples.inbox(tmp_path / "inbox")
    (tmp_path / "inbox" / "copy-of-one.pdf").write_bytes((tmp_path / "inbox/contracts/one.pdf").read_bytes())
    args = ("run", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--emulate", "--upload", "files", "--run", "r")
    killed = cli(tmp_path, dict(os.environ, BATCHPILOT_CRASH_AFTER=crash), *args)
    assert killed.returncode == -9, killed.stderr[-2000:]
    done = cli(tmp_path, dict(os.environ), *args)
    assert done.returncode == 0, done.stderr[-2000:]
    receipt = json.loads(done.stdout)
    assert receipt["counts"]["ok"] == 7
    log = [json.loads(l) for l in (tmp_path / "r/emulator/files.jsonl").read_text().splitlines()]
    uploaded = [e["filename"] for e in log if e["event"] == "uploaded"]
    assert len(uploaded) == len(set(uploaded)) == 6  # 7 items, 6 distinct files, each uploaded exactly once
    assert {e["id"] for e in log if e["event"] == "deleted"} == {e["id"] for e in log if e["event"] == "uploaded"}
    assert receipt["uploads"]["deleted"] == 6
    text = (tmp_path / "r/requests.jsonl").read_text()
    assert '"base64"' not in text and "pending-upload" not in text
    ids = {attachment(json.loads(l))["source"]["file_id"] for l in text.splitlines()}
    assert ids == {e["id"] for e in log if e["event"] == "uploaded"}


def test_keep_uploads_keeps_them(bp):
    samples.inbox(Path("inbox"))
    r = bp("run", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--emulate", "--upload", "files",
           "--keep-uploads", "--run", "r")
    assert r.code == 0, r.stderr
    assert r.receipt["uploads"] == {"kept": 6, "why": "--keep-uploads"}
    log = Path("r/emulator/files.jsonl").read_text()
    assert '"deleted"' not in log


def test_the_emulators_files_api_needs_the_beta_header_and_resolves_file_ids(emulator):
    import anthropic

    emu = emulator()
    client = anthropic.Anthropic(api_key="k", base_url=emu.base_url, max_retries=0)
    pdf = samples.pdf(4)
    with pytest.raises(anthropic.BadRequestError, match="anthropic-beta"):
        client.beta.files.upload(file=("a.pdf", pdf, "application/pdf"))
    meta = client.beta.files.upload(file=("a.pdf", pdf, "application/pdf"), betas=["files-api-2025-04-14"])
    assert meta.size_bytes == len(pdf) and meta.mime_type == "application/pdf"
    assert [f.id for f in client.beta.files.list(betas=["files-api-2025-04-14"])] == [meta.id]
    params = {"model": "claude-haiku-5-5", "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": meta.id}}, {"type": "text", "text": "hi"}]}]}
    with pytest.raises(anthropic.BadRequestError, match="beta"):
        client.messages.count_tokens(**params)
    counted = client.messages.count_tokens(**params, extra_headers={"anthropic-beta": "files-api-2025-04-14"})
    assert counted.input_tokens >= 4 * 2250  # the emulator read the 4 pages itself
    client.beta.files.delete(meta.id, betas=["files-api-2025-04-14"])
    with pytest.raises(anthropic.BadRequestError, match="File not found"):
        client.messages.count_tokens(**params, extra_headers={"anthropic-beta": "files-api-2025-04-14"})


def test_the_emulator_refuses_what_the_api_refuses(emulator):
    import anthropic

    client = anthropic.Anthropic(api_key="k", base_url=emulator().base_url, max_retries=0)

    def send(block):
        return client.messages.create(model="claude-haiku-5-5", max_tokens=50,
                                      messages=[{"role": "user", "content": [block, {"type": "text", "text": "x"}]}])

    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    with pytest.raises(anthropic.BadRequestError, match="encrypted"):
        send({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(samples.pdf(1, encrypted=True))}})
    with pytest.raises(anthropic.BadRequestError, match="100 PDF pages"):
        send({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(samples.pdf(101))}})
    with pytest.raises(anthropic.BadRequestError, match="does not match"):
        send({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(samples.png(4, 4))}})
    ok = send({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(samples.png(300, 150))}})
    assert ok.usage.input_tokens >= 60  # 300 x 150 / 750
    # billed by its pixels after downscaling to ~1.15 MP (1516 x 758 / 750 = 1,533), not by its base64's characters
    big = b64(samples.png(2000, 1000))
    assert len(big) > 30_000  # ~10,000 tokens if it were counted as text
    wide = send({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big}})
    assert 1_533 <= wide.usage.input_tokens < 1_600, wide.usage
    counted = client.messages.count_tokens(model="claude-haiku-5-5", messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big}}, {"type": "text", "text": "x"}]}])
    assert counted.input_tokens == wide.usage.input_tokens


# ----------------------------------------------------------------------------------------------- agents


def test_agents_prompts_point_at_the_files_and_carry_no_base64(bp):
    samples.inbox(Path("inbox"))
    r = bp("run", "-t", "summarize", "-i", INBOX, "--mode", "agents", "--run", "r")
    assert r.code == 0, r.stderr
    prompts = sorted(Path("r/prompts").glob("*.md"))
    assert len(prompts) == 6
    needles = [base64.b64encode(Path(p).read_bytes()[:48]).decode()[:40] for p in
               ("inbox/contracts/one.pdf", "inbox/shot-a.png", "inbox/scan.jpg")]
    for prompt in prompts:
        text = prompt.read_text()
        assert not any(n in text for n in needles) and "base64" not in text
    five = Path("r/prompts/contracts-five-pdf.md").read_text()
    assert f"<item_file>{Path('inbox/contracts/five.pdf').resolve()}</item_file>" in five and "5 page(s)" in five


def test_extract_ships_an_invoice_example_that_validates():
    from jsonschema import Draft202012Validator

    from batchpilot.prepare.templates import TEMPLATES_DIR

    examples = TEMPLATES_DIR / "extract" / "examples"
    schema = json.loads((examples / "invoice.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(json.loads((examples / "invoice.output.json").read_text()))


def test_auto_upload_picks_files_when_inline_would_be_many_batch_limits(bp, monkeypatch):
    from batchpilot.prepare import uploads

    samples.inbox(Path("inbox"))
    inline = uploads.inline_payload_bytes(INBOX)
    assert inline == sum(4 * -(-p.stat().st_size // 3) for p in Path("inbox").rglob("*")
                         if p.is_file() and media.sniff_file(str(p)))
    # The real limit is 256 MB; a tenth of this folder's payload stands in for it (the rule is the ratio).
    monkeypatch.setattr(uploads, "BATCH_BODY_BYTES", inline // 10)
    r = bp("prepare", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--run", "r")
    assert r.code == 0, r.stderr
    assert json.loads(Path("r/run.json").read_text())["upload"] == "files"
    assert "pending-upload" in Path("r/requests.jsonl").read_text() and '"base64"' not in Path("r/requests.jsonl").read_text()
    r = bp("prepare", "-t", "summarize", "-i", INBOX, "--mode", "direct", "--run", "d")
    assert json.loads(Path("d/run.json").read_text())["upload"] == "inline"  # no batch limit to fill


@pytest.mark.parametrize("args,error,hint", [
    (["-i", INBOX, "--mode", "direct", "--upload", "files"], "--upload files works with --mode batch", "leave --upload out"),
    (["-i", INBOX, "--mode", "batch", "--file-field", "file"], "--file-field 'file' needs a .jsonl or .csv", "leave --file-field out"),
])
def test_bad_media_options_are_errors_with_hints(bp, args, error, hint):
    samples.inbox(Path("inbox"))
    r = bp("prepare", "-t", "summarize", *args, "--run", "r")
    assert r.code == 1 and f"Error: {error}" in r.stderr and f"Hint: {hint}" in r.stderr
    assert not Path("r").exists()


def test_step_by_step_submit_status_fetch_uploads_once_and_fetch_deletes_at_the_end(bp):
    samples.inbox(Path("inbox"))
    assert bp("prepare", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--upload", "files", "--run", "r").code == 0
    assert "pending-upload" in Path("r/requests.jsonl").read_text()
    r = bp("submit", "r", "--emulate")
    assert r.code == 0, r.stderr
    assert "pending-upload" not in Path("r/requests.jsonl").read_text()
    assert bp("status", "r", "--wait", "--emulate").code == 0
    r = bp("fetch", "r", "--emulate")
    assert r.code == 0, r.stderr
    assert r.receipt["uploads"] == {"deleted": 6, "kept": 0}
    log = [json.loads(l) for l in Path("r/emulator/files.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "uploaded" for e in log) == sum(e["event"] == "deleted" for e in log) == 6


def test_an_explicit_retry_after_the_uploads_were_deleted_uploads_what_it_needs_once_again(tmp_path, emulator):
    from batchpilot.emulator.behaviour.faults import FaultRule

    account = dict(data_dir=str(tmp_path / "account"), persist=True)
    emu = emulator(**account, faults=[FaultRule.parse("kind=errored,match=^shot-a")])
    env = dict(os.environ, ANTHROPIC_BASE_URL=emu.base_url, ANTHROPIC_API_KEY="test-key",
               BATCHPILOT_POLL_MIN="0.02", BATCHPILOT_POLL_MAX="0.1")
    samples.inbox(tmp_path / "inbox")
    first = cli(tmp_path, env, "run", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--upload", "files", "--run", "r")
    assert first.returncode == 0, first.stderr[-2000:]
    receipt = json.loads(first.stdout)
    assert receipt["counts"]["ok"] == 5 and receipt["uploads"]["deleted"] == 6  # shot-a errored for good: job ended
    emu.__exit__(None, None, None)
    emu = emulator(**account)  # the same account, the fault gone (the user fixed what made the request fail)
    env["ANTHROPIC_BASE_URL"] = emu.base_url
    killed = cli(tmp_path, dict(env, BATCHPILOT_CRASH_AFTER="after-upload-before-journal"), "retry", "r", "--only", "errored")
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = cli(tmp_path, env, "retry", "r", "--only", "errored")
    assert again.returncode == 0, again.stderr[-2000:]
    receipt = json.loads(again.stdout)
    assert receipt["items"] == {"ok": 6} and receipt["uploads"] == {"deleted": 7, "kept": 0}, receipt
    log = [json.loads(l) for l in (tmp_path / "account/files.jsonl").read_text().splitlines()]
    uploaded = [e["filename"] for e in log if e["event"] == "uploaded"]
    assert len(uploaded) == 7 and sum("shot-a" in name for name in uploaded) == 2  # only what the retry needed, once
    assert {e["id"] for e in log if e["event"] == "deleted"} == {e["id"] for e in log if e["event"] == "uploaded"}
    lines = {l["custom_id"]: attachment(l)["source"]["file_id"] for l in requests_of(tmp_path / "r")}
    newest = [e["id"] for e in log if e["event"] == "uploaded" and "shot-a" in e["filename"]][-1]
    assert lines["shot-a-png"] == newest


def test_a_file_changed_between_prepare_and_submit_is_not_uploaded(bp):
    samples.inbox(Path("inbox"))
    assert bp("prepare", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--upload", "files", "--run", "r").code == 0
    Path("inbox/shot-a.png").write_bytes(samples.png(64, 49))  # edited after prepare: other bytes, other cost
    r = bp("submit", "r", "--emulate")
    assert r.code == 1 and "shot-a.png has changed since the run was prepared" in r.stderr and "Hint:" in r.stderr
    log = [json.loads(l) for l in Path("r/emulator/files.jsonl").read_text().splitlines()] \
        if Path("r/emulator/files.jsonl").exists() else []
    assert not any("shot-a" in e.get("filename", "") for e in log)


def test_a_run_reconciling_a_lost_upload_never_adopts_another_runs_upload_of_the_same_file(tmp_path, emulator):
    emu = emulator(data_dir=str(tmp_path / "account"), persist=True)
    env = dict(os.environ, ANTHROPIC_BASE_URL=emu.base_url, ANTHROPIC_API_KEY="test-key",
               BATCHPILOT_POLL_MIN="0.02", BATCHPILOT_POLL_MAX="0.1")
    samples.inbox(tmp_path / "inbox")
    args = ("-t", "summarize", "-i", INBOX, "--mode", "batch", "--upload", "files")
    other = cli(tmp_path, env, "run", *args, "--keep-uploads", "--run", "other")  # still needs its uploads
    assert other.returncode == 0, other.stderr[-2000:]
    assert cli(tmp_path, env, "prepare", *args, "--run", "mine").returncode == 0
    killed = cli(tmp_path, dict(env, BATCHPILOT_CRASH_AFTER="journal:1"), "submit", "mine")  # after its first intent
    assert killed.returncode == -9, killed.stderr[-2000:]
    done = cli(tmp_path, env, "run", *args, "--run", "mine")
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(l) for l in (tmp_path / "account/files.jsonl").read_text().splitlines()]
    theirs = {attachment(l)["source"]["file_id"] for l in requests_of(tmp_path / "other")}
    assert len(theirs) == 6 and not theirs & {e["id"] for e in log if e["event"] == "deleted"}
    assert sum(e["event"] == "uploaded" for e in log) == 12  # each run uploaded its 6 files, once


def test_a_pilot_counts_the_pages_and_pixels_of_its_attachments(bp):
    """The pilot's longest item is the document with the most pages, not the longest text, and its
    billed/estimated input ratio compares like with like: the attachments' pages and pixels are in the
    estimate, as plan counts them, not only the short tag their base64 block is estimated at."""
    samples.inbox(Path("inbox"))
    r = bp("run", "-t", "summarize", "-i", INBOX, "--mode", "batch", "--emulate", "--run", "r", "--pilot", "4",
           "--pilot-only")
    assert r.code == 0, r.stderr
    chosen = {json.loads(line)["custom_id"] for line in Path("r/rounds/pilot.jsonl").read_text().splitlines()}
    assert "contracts-five-pdf" in chosen  # 5 pages: 11,250 tokens, the largest request of the job
    assert 0.5 < r.receipt["pilot"]["fit"]["input_billed_per_estimated"] < 2, r.receipt["pilot"]["fit"]
    rest = r.receipt["pilot"]["rest"]
    planned = bp("plan", "-t", "summarize", "-i", INBOX).receipt["tokens"]["input"]
    assert rest["input_tokens"] < planned  # the rest's 2 items cannot cost more input than plan's whole 6


def test_prompts_above_the_long_prompt_tier_are_priced_at_it_by_plan_and_the_pilot(bp):
    """Haiku 5.5 bills a prompt over 100K tokens at its higher tier, every token of it: 50- and 60-page PDFs
    (~112K and ~135K tokens) cost about 5x the base price. plan's range and the pilot's extrapolation hold
    the bill, not a fifth of it."""
    Path("docs").mkdir()
    for name, pages in (("a", 50), ("b", 60), ("c", 2)):
        Path(f"docs/{name}.pdf").write_bytes(samples.pdf(pages))
    job = ("-t", "summarize", "-i", "docs/*.pdf", "--model", "claude-haiku-5-5")
    plan_modes = bp("plan", *job).receipt["modes"]
    planned = plan_modes["direct"]
    direct = bp("run", *job, "--mode", "direct", "--emulate", "--run", "d")
    assert direct.code == 0, direct.stderr
    low, high = planned["cost_range_usd"]
    assert low <= direct.receipt["cost_usd"] <= high, (planned, direct.receipt["cost_usd"])
    kept = json.loads(Path("d/run.json").read_text())["estimate"]  # the run keeps plan's figure, tier included
    assert kept["cost_usd"] == plan_modes[kept["mode"]]["cost_usd"], (kept, plan_modes[kept["mode"]])
    piloted = bp("run", *job, "--mode", "batch", "--emulate", "--run", "p", "--pilot", "2")
    assert piloted.code == 0, piloted.stderr
    estimate = piloted.receipt["pilot"]["whole_job"]["cost_usd"]
    assert abs(estimate / piloted.receipt["cost_usd"] - 1) < 0.15, (estimate, piloted.receipt["cost_usd"])
