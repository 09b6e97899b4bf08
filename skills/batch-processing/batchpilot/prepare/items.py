"""Items: where the work comes from, and the stable `custom_id` each one is known by.

`load_items(src)` understands a glob (`'src/**/*.py'`), a directory (every file below it, hidden ones
excluded), a `.jsonl` file (one object per line), a `.csv` file (header row), a single file, and `-` (one
item per stdin line). It yields `Item`s in input order and reports skipped ones (binary, empty, unreadable,
oversized, special: FIFOs, devices, sockets) through a callback, never silently. Every byte goes through
`prepare.reader`, so memory stays bounded by `--max-item-bytes` whatever the input (an endless device, a 1 GB
line) and nothing that is not a regular file is ever opened for reading.

A file whose bytes are a PDF or a PNG / JPEG / GIF / WebP image (`prepare.media`, sniffed, not guessed from
the extension) is a `document` or `image` item: its `media` names the file, and the request carries it as a
content block. One over an API limit (pages, bytes, pixels) or that cannot be read (an encrypted PDF) is
skipped with a reason naming the limit and the value. A JSONL/CSV record can attach such a file through
`file_field` (a path, relative to the records file).

custom_id rules (the Message Batches API wants `^[A-Za-z0-9_-]{1,64}$`, unique within a batch):
* a record's own `custom_id` field is used verbatim and must already be valid;
* a record's `id` field, or a file's path (relative to the directory or the glob's fixed prefix), is used when valid; otherwise it is made readable
  (other characters become `-`) and, when that loses information or is too long, suffixed with a short hash
  of the original, so the id is stable across reruns;
* a record with no id is `line-N` / `row-N` by its position;
* two items with the same explicit id are an error; file paths that sanitise to the same id all get hashes.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.files import parse_json
from batchpilot.prepare.limits import DEFAULT_MAX_ITEM_BYTES
from batchpilot.prepare.media import Media, Refusal, inspect, sniff_file
from batchpilot.prepare.reader import NotRegular, bounded_lines, check_stdin, open_source, read_bounded, sniff

CUSTOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_ID = 64
HASH_LEN = 10
BINARY_SNIFF_BYTES = 8192
GLOB_CHARS = set("*?[")
# A record line may spell its content with escapes (\uXXXX is 6 bytes for at most 3 of UTF-8), plus its fields.
LINE_FACTOR = 6
LINE_SLACK = 64 * 1024

SkipFn = Callable[[str, str, str], None]  # (source, reason, detail)
HeaderFn = Callable[[str, list], None]  # (source, column names) of a CSV's header row


def line_limit(max_item_bytes: int) -> int:
    """The longest JSONL/CSV/stdin line read for an item of at most `max_item_bytes` bytes."""
    return max_item_bytes * LINE_FACTOR + LINE_SLACK


@dataclass
class Item:
    """One unit of work. `content` is the text the template renders; `fields` the record's columns."""

    custom_id: str
    source: str
    content: str
    kind: str  # file | record | line | document | image
    path: str | None = None
    fields: dict = field(default_factory=dict)
    media: Media | None = None  # the attached PDF or image, for document and image items

    def manifest(self) -> dict:
        """The items.jsonl line: everything but file content (the file is the source of truth)."""
        size = self.media.bytes if self.media else len(self.content.encode("utf-8"))
        rec = {"custom_id": self.custom_id, "source": self.source, "kind": self.kind, "bytes": size}
        if self.path is not None:
            rec["path"] = self.path
        if self.fields:
            rec["fields"] = self.fields
        if self.media is not None:
            rec["media"] = self.media.to_json()
        return rec


def media_item(custom_id: str, source: str, media: Media, path: str | None, fields: dict) -> Item:
    """A document or image item; its `content` is a one-line description ({{item.content}} renders it)."""
    what = f"{os.path.basename(media.path)}, {media.media_type}, {media.figures()}"
    return Item(custom_id=custom_id, source=source, content=f"(attached {media.kind}: {what})", kind=media.kind,
                path=path, fields=fields, media=media)


def _attach(path: str, source: str, skip: SkipFn, inline: bool) -> Media | None:
    found = inspect(path, inline)
    if isinstance(found, Refusal):
        skip(source, found.reason, found.detail)
        return None
    return found


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_LEN]


def sanitize_id(raw: str) -> str:
    """A readable id from any string: disallowed characters become `-`, runs collapse, ends trimmed."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")
    return clean or "item"


def derive_id(raw: str, force_hash: bool = False) -> str:
    """`raw` if it is a valid custom_id; else a readable prefix plus a short hash of `raw` (≤ 64 chars)."""
    if CUSTOM_ID_RE.fullmatch(raw) and not force_hash:
        return raw
    readable = sanitize_id(raw)
    lossless = readable == raw
    if lossless and len(readable) <= MAX_ID and not force_hash:
        return readable
    prefix = readable[: MAX_ID - HASH_LEN - 1].rstrip("-") or "item"
    return f"{prefix}-{_short_hash(raw)}"


def file_ids(paths: list[str]) -> list[str]:
    """custom_ids for file paths: readable path ids; paths that would collide all carry a hash."""
    readable = [sanitize_id(p) if len(sanitize_id(p)) <= MAX_ID else derive_id(p, force_hash=True) for p in paths]
    counts: dict[str, int] = {}
    for rid in readable:
        counts[rid] = counts.get(rid, 0) + 1
    return [derive_id(p, force_hash=True) if counts[rid] > 1 else rid for p, rid in zip(paths, readable)]


# ----------------------------------------------------------------------------------------------- sources


def _glob_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard: ids are relative to it."""
    parts = []
    for part in pattern.replace(os.sep, "/").split("/"):
        if any(ch in part for ch in GLOB_CHARS):
            break
        parts.append(part)
    base = "/".join(parts)
    return base if base and os.path.isdir(base) else (os.path.dirname(base) or ".")


def _list_files(src: str) -> list[str]:
    if any(ch in src for ch in GLOB_CHARS):
        # Anything that is not a directory is an item; one that cannot be read is skipped as unreadable.
        matches = sorted(p for p in glob.glob(src, recursive=True) if os.path.lexists(p) and not os.path.isdir(p))
        if not matches:
            raise BatchpilotError(
                f"no files match {src!r}",
                "check the pattern from the current directory; quote it so the shell does not expand it, "
                "and use ** for subdirectories, e.g. 'src/**/*.py'",
            )
        return matches
    found = []
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
    if not found:
        raise BatchpilotError(f"directory {src!r} has no files", "point --items at a directory with files, or a glob")
    return found


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_file(path: str, max_bytes: int, skip: SkipFn) -> str | None:
    try:
        data = read_bounded(path, max_bytes)
    except NotRegular as exc:
        skip(path, "special", str(exc))
        return None
    except OSError as exc:
        skip(path, "unreadable", exc.strerror or str(exc))
        return None
    except ValueError as exc:
        skip(path, "oversized", f"{exc.args[0]} bytes > {max_bytes}")
        return None
    found = sniff(data)
    if found:
        skip(path, *found)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skip(path, "binary", f"not UTF-8 at byte {exc.start}")
        return None
    if not text.strip():
        skip(path, "empty", "no content")
        return None
    return text


def _iter_files(paths: list[str], base: str, max_bytes: int, skip: SkipFn, inline: bool = True) -> Iterator[Item]:
    names = [os.path.relpath(p, base) if base else p for p in paths]
    for path, cid in zip(paths, file_ids(names)):
        if not _utf8_name(path):  # the run's files are UTF-8 JSON: such a name could never be written down
            skip(os.fsencode(path).decode("utf-8", "backslashreplace"), "unreadable", "the file name is not UTF-8")
            continue
        fields = {"name": os.path.basename(path), "ext": os.path.splitext(path)[1].lstrip(".")}
        if os.path.isfile(path) and sniff_file(path):
            media = _attach(path, path, skip, inline)
            if media is not None:
                yield media_item(cid, path, media, path, fields)
            continue
        text = _read_file(path, max_bytes, skip)
        if text is not None:
            yield Item(custom_id=cid, source=path, content=text, kind="file", path=path, fields=fields)


def _record_content(record: dict, content_field: str | None, source: str = "") -> str:
    if content_field:
        if content_field not in record:
            raise BatchpilotError(
                f"{source}: no field {content_field!r} for --content-field",
                f"fields here: {', '.join(sorted(map(str, record))) or 'none'}; pass one of them",
            )
        value = record.get(content_field)
    else:
        value = next((record[k] for k in ("content", "text", "body") if k in record), None)
        if value is None:
            return json.dumps(record, ensure_ascii=False, indent=2)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _IdBook:
    """Assigns record ids and enforces uniqueness; holds only the set of ids (the one index we keep)."""

    def __init__(self, where: str):
        self.where = where
        self.seen: dict[str, str] = {}

    def assign(self, record: dict, position: int, prefix: str, source: str) -> str:
        if "custom_id" in record:
            raw = record["custom_id"]
            if not isinstance(raw, str) or not CUSTOM_ID_RE.fullmatch(raw):
                shown = raw if isinstance(raw, str) else json.dumps(raw)
                problem = "longer than 64 characters" if isinstance(raw, str) and len(raw) > MAX_ID else "not a valid custom_id"
                raise BatchpilotError(
                    f"{source}: custom_id {shown[:80]!r} is {problem}",
                    "a custom_id uses only letters, digits, - and _ (1-64 characters); rename it, "
                    "or put the natural key in an `id` field and batchpilot derives a valid custom_id",
                )
            cid = raw
        elif record.get("id") not in (None, ""):
            cid = derive_id(str(record["id"]))
        else:
            cid = f"{prefix}-{position}"
        if cid in self.seen:
            raise BatchpilotError(
                f"{source}: duplicate id {cid!r} (first seen at {self.seen[cid]})",
                f"every item in {self.where} needs a unique id; fix or remove the duplicate",
            )
        self.seen[cid] = source
        return cid


def _iter_jsonl(path: str, content_field: str | None, max_bytes: int, skip: SkipFn,
                attach: "Attach | None" = None) -> Iterator[Item]:
    book = _IdBook(path)
    limit = line_limit(max_bytes)
    with open_source(path) as fh:
        for number, raw in enumerate(bounded_lines(fh, limit), 1):
            source = f"{path}:{number}"
            if raw is None:
                skip(source, "oversized", f"line longer than {limit} bytes")
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise BatchpilotError(f"{path} line {number}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                      "convert the file to UTF-8") from None
            if not line.strip():
                continue
            try:
                record = parse_json(line)
            except ValueError as exc:
                raise BatchpilotError(
                    f"{path} line {number}: invalid JSON ({exc})",
                    "each line of a .jsonl file must be one standard JSON object (no NaN or Infinity); fix that line",
                ) from None
            if not isinstance(record, dict):
                raise BatchpilotError(
                    f"{path} line {number}: expected a JSON object, got {type(record).__name__}",
                    'wrap the value in an object, e.g. {"text": ...}',
                )
            item = _record_item(record, book.assign(record, number, "line", source), source, content_field,
                                max_bytes, skip, attach)
            if item is not None:
                yield item


def _csv_lines(fh, path: str, limit: int) -> Iterator[str]:
    """The decoded lines of a CSV for csv.reader: a byte-order mark (every Excel export has one) dropped, and a
    line longer than `limit` an error, since a quoted field can span lines and a skip could misalign rows."""
    for number, raw in enumerate(bounded_lines(fh, limit), 1):
        if raw is None:
            raise BatchpilotError(f"{path} line {number}: longer than {limit} bytes",
                                  "raise --max-item-bytes, or split that row")
        yield raw.decode("utf-8-sig" if number == 1 else "utf-8")


def _iter_csv(path: str, content_field: str | None, max_bytes: int, skip: SkipFn,
              attach: "Attach | None" = None, on_header: HeaderFn | None = None) -> Iterator[Item]:
    limit = line_limit(max_bytes)
    csv.field_size_limit(max(csv.field_size_limit(), limit))
    with open_source(path) as fh:
        try:
            reader = csv.reader(_csv_lines(fh, path, limit))
            header = next(reader, None)
            _check_header(path, header)
            assert header is not None
            if on_header is not None:
                on_header(f"{path}:1", [h.strip() for h in header])
            book = _IdBook(path)
            for number, row in enumerate(reader, 2):
                if not any(cell.strip() for cell in row):
                    continue
                source = f"{path}:{number}"
                if len(row) != len(header):
                    raise BatchpilotError(
                        f"{path} line {number}: {len(row)} fields, the header has {len(header)}",
                        "quote fields that contain commas or newlines, and keep one value per column",
                    )
                record = dict(zip(header, row))
                item = _record_item(record, book.assign(record, number - 1, "row", source), source, content_field,
                                    max_bytes, skip, attach)
                if item is not None:
                    yield item
        except UnicodeDecodeError as exc:
            raise BatchpilotError(f"{path}: not UTF-8 text ({exc.reason})", "convert the file to UTF-8") from None
        except csv.Error as exc:
            raise BatchpilotError(f"{path}: malformed CSV ({exc})", "check the quoting of that line") from None


@dataclass(frozen=True)
class Attach:
    """`--file-field`: the record field naming a file to attach, paths relative to `base`."""

    field: str
    base: str
    inline: bool = True


def _record_item(record: dict, custom_id: str, source: str, content_field: str | None, max_bytes: int,
                 skip: SkipFn, attach: Attach | None = None) -> Item | None:
    """One JSONL/CSV record as an item, or None (after `skip`) when its content is too large or empty."""
    if attach is not None:
        value = record.get(attach.field)
        if not isinstance(value, str) or not value.strip():
            skip(source, "no_file", f"no path in field {attach.field!r}")
            return None
        target = os.path.join(attach.base, os.path.expanduser(value))
        if not os.path.isfile(target):
            what = "a directory, not a file" if os.path.isdir(target) else "no such file"
            skip(source, "unreadable", f"{value}: {what} (paths are relative to {attach.base})")
            return None
        if not sniff_file(target):
            skip(source, "binary", f"{value}: not a PDF, PNG, JPEG, GIF or WebP")
            return None
        media = _attach(target, source, skip, attach.inline)
        return None if media is None else media_item(custom_id, source, media, value, record)
    content = _record_content(record, content_field, source)
    if len(content.encode("utf-8")) > max_bytes:
        skip(source, "oversized", f"{len(content)} characters")
        return None
    if not content.strip():
        skip(source, "empty", "no content")
        return None
    return Item(custom_id=custom_id, source=source, content=content, kind="record", fields=record)


def _check_header(path: str, header: list[str] | None) -> None:
    hint = "the first line of a .csv must name the columns, e.g. id,text"
    if not header or not any(h.strip() for h in header):
        raise BatchpilotError(f"{path}: no header row", hint)
    names = [h.strip() for h in header]
    if any(not n for n in names):
        raise BatchpilotError(f"{path}: the header row has an empty column name", hint)
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)  # not names.count: 10^5 columns
    if dupes:
        raise BatchpilotError(f"{path}: the header row repeats column {dupes[0]!r}", hint)
    if all(re.fullmatch(r"[-+]?\d+(\.\d+)?", n) for n in names):
        raise BatchpilotError(f"{path}: the first row {','.join(names)!r} looks like data, not a header", hint)


class _Encoded:
    """A text stream read as UTF-8 bytes, chunk by chunk (for a caller that hands `load_items` a text stdin)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def read(self, size: int) -> bytes:
        return self.stream.read(size).encode("utf-8")


def _iter_lines(stream, max_bytes: int, skip: SkipFn) -> Iterator[Item]:
    for number, raw in enumerate(bounded_lines(stream, max_bytes + 2), 1):  # + 2: the line's \r\n
        source = f"stdin:{number}"
        if raw is None:
            skip(source, "oversized", f"line longer than {max_bytes} bytes")
            continue
        text = raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")
        if not text.strip():
            skip(source, "empty", "blank line")
            continue
        if len(text.encode("utf-8")) > max_bytes:
            skip(source, "oversized", f"{len(text)} characters")
            continue
        yield Item(custom_id=f"line-{number}", source=source, content=text, kind="line", fields={"text": text})


def load_items(
    src: str,
    skip: SkipFn,
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
    content_field: str | None = None,
    stdin: TextIO | None = None,
    file_field: str | None = None,
    inline: bool = True,
    on_header: HeaderFn | None = None,
) -> Iterator[Item]:
    """Yield the items of `src` in input order; call `skip(source, reason, detail)` for each one left out, and
    `on_header(source, columns)` with the row a CSV's column names were taken from.

    `file_field`: records attach the file that field names; `inline`: attachments travel as base64 (their
    size limits apply), else as uploaded files."""
    if file_field and not src.lower().endswith((".jsonl", ".ndjson", ".csv")):
        raise BatchpilotError(f"--file-field {file_field!r} needs a .jsonl or .csv items source, not {src!r}",
                              "leave --file-field out: PDFs and images in a glob or directory are attached by themselves")
    if src == "-":
        stream = _Encoded(stdin) if stdin is not None else sys.stdin.buffer
        check_stdin(stream)
        return _iter_lines(stream, max_item_bytes, skip)
    if any(ch in src for ch in GLOB_CHARS) and not os.path.exists(src):
        return _iter_files(_list_files(src), _glob_base(src), max_item_bytes, skip, inline)
    if os.path.isdir(src):
        return _iter_files(_list_files(src), src, max_item_bytes, skip, inline)
    if not os.path.exists(src):
        raise BatchpilotError(
            f"items source {src!r} does not exist",
            "pass a glob ('src/**/*.py'), a directory, a .jsonl or .csv file, or - for stdin lines",
        )
    lower = src.lower()
    attach = Attach(file_field, os.path.dirname(os.path.abspath(src)), inline) if file_field else None
    if lower.endswith((".jsonl", ".ndjson")):
        return _iter_jsonl(src, content_field, max_item_bytes, skip, attach)
    if lower.endswith(".csv"):
        return _iter_csv(src, content_field, max_item_bytes, skip, attach, on_header)
    return _iter_files([src], os.path.dirname(src), max_item_bytes, skip, inline)


def candidate_files(src: str) -> list[str]:
    """The files a glob or directory source lists (no reading); [] for any other source."""
    try:
        if any(ch in src for ch in GLOB_CHARS) and not os.path.exists(src):
            return _list_files(src)
        if os.path.isdir(src):
            return _list_files(src)
    except BatchpilotError:
        return []
    return []


def items_fingerprint_update(h: "hashlib._Hash", item: Item) -> None:
    """Feed one item into a run's input fingerprint (id, source and content)."""
    h.update(item.custom_id.encode())
    h.update(b"\0")
    h.update(item.source.encode("utf-8", "replace"))
    h.update(b"\0")
    h.update(item.content.encode("utf-8"))
    if item.media is not None:  # the file's bytes, not its one-line description, identify the item
        h.update(b"\0" + item.media.sha256.encode())
    h.update(b"\1")


def describe_skipped(skipped: list) -> str:
    """`2 binary, 1 empty skipped: a.bin (binary: contains NUL bytes), ...` for an error message."""
    if not skipped:
        return "none found"
    counts: dict[str, int] = {}
    for _, reason, _ in skipped:
        counts[reason] = counts.get(reason, 0) + 1
    head = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    examples = "; ".join(f"{src} ({reason}: {detail})" for src, reason, detail in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"{head} skipped: {examples}{more}"

