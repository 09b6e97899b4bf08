"""A PDF's page count, read from its page tree without a PDF library (and why a PDF cannot be read).

The catalog's /Pages node is walked through /Kids to its /Type /Page leaves, including objects packed in
compressed object streams (zlib, the standard library); when a kid is missing, the root's own /Count is
trusted. An /Encrypt entry in a trailer or cross-reference stream dictionary means the file is encrypted,
which the API refuses (https://platform.claude.com/docs/en/build-with-claude/pdf-support: "Standard PDF (no
passwords/encryption)"). Splitting a long PDF into page ranges would need a PDF writer, so it is not done.
"""

from __future__ import annotations

import re
import zlib

_OBJ_HEAD = re.compile(rb"(\d+)\s+\d+\s+obj\b")
_ENDOBJ = re.compile(rb"\bendobj")
_REF = rb"(\d+)\s+\d+\s+R"
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\n?endstream", re.S)
MAX_TREE_NODES = 1_000_000
# A compressed object stream is inflated at most this far, and all of a file's together at most MAX_INFLATED:
# a few hundred kilobytes of zeros deflate from gigabytes (a "zip bomb"), and the reader must stay bounded.
DICT_WINDOW = 4096  # how far a trailer or XRef dictionary is read when its end marker is missing
MAX_OBJSTM_BYTES = 16 * 1024 * 1024
MAX_INFLATED = 64 * 1024 * 1024


def pdf_pages(data: bytes) -> tuple[int | None, str | None]:
    """(pages, None) from the PDF's page tree, or (None, why it cannot be read)."""
    if not data.startswith(b"%PDF-"):
        return None, "not a PDF (no %PDF- header)"
    if _encrypted(data):
        return None, "encrypted (its trailer has an /Encrypt entry); save an unencrypted copy"
    objects = _objects(data)
    root = None
    for body in objects.values():
        if re.search(rb"/Type\s*/Catalog\b", body):
            match = re.search(rb"/Pages\s+" + _REF, body)
            root = int(match.group(1)) if match else None
    if root is None or root not in objects:
        return None, "no page tree (no /Catalog with /Pages); the file may be damaged"
    count = _walk(objects, root)
    if count is None:  # a kid is missing: trust the root's own /Count, which the tree is meant to sum to
        match = re.search(rb"/Count\s+(\d+)", objects[root])
        count = int(match.group(1)) if match else None
    if not count:
        return None, "its page tree has no pages"
    return count, None


def _encrypted(data: bytes) -> bool:
    """An /Encrypt entry in a trailer dictionary, or in a cross-reference stream's dictionary.

    Linear however hostile the file: the next `startxref` / `stream` is searched once per stretch, a missing
    one bounds the dictionary to DICT_WINDOW bytes, and bytes already read for an earlier match are not read
    again (a file of thousands of bare `trailer <<` or `/Type /XRef` would otherwise be quadratic)."""
    for opener, closer, back in ((rb"trailer\s*<<", b"startxref", False), (rb"/Type\s*/XRef\b", b"stream", True)):
        next_close, scanned, previous = -2, 0, 0
        for match in re.finditer(opener, data):
            start = match.end()
            if back:  # the XRef stream's dictionary starts at its `obj`, which may hold /Encrypt before /Type
                lower = max(previous, match.start() - DICT_WINDOW)
                found = data.rfind(b"obj", lower, match.start())
                start = found if found >= 0 else lower
                previous = match.end()
            if next_close != -1 and next_close < match.end():
                next_close = data.find(closer, match.end())
            end = next_close if next_close > 0 else match.end() + DICT_WINDOW
            start = max(start, scanned - len(b"/Encrypt"))
            if start < end and b"/Encrypt" in data[start:end]:
                return True
            scanned = max(scanned, end)
    return False


def _objects(data: bytes) -> dict[int, bytes]:
    """Object number -> body (later definitions win, as in an incremental update), object streams unpacked.

    One pass: each `N G obj` header is closed by the next `endobj`; once no `endobj` is left the scan stops, so
    a damaged file with thousands of unclosed objects costs linear time, not a search to the end per header."""
    objects: dict[int, bytes] = {}
    at = 0
    while True:
        head = _OBJ_HEAD.search(data, at)
        if head is None:
            break
        end = _ENDOBJ.search(data, head.end())
        if end is None:
            break
        objects[int(head.group(1))] = data[head.end():end.start()]
        at = end.end()
    budget = [MAX_INFLATED]
    for body in list(objects.values()):
        if re.search(rb"/Type\s*/ObjStm\b", body):
            for number, inner in _object_stream(body, budget):
                objects.setdefault(number, inner)
    return objects


def _object_stream(body: bytes, budget: list[int]) -> list[tuple[int, bytes]]:
    """The objects packed in one object stream; [] when it is damaged or would inflate past the budget."""
    stream = _STREAM.search(body)
    first = re.search(rb"/First\s+(\d+)", body)
    count = re.search(rb"/N\s+(\d+)", body)
    if not (stream and first and count):
        return []
    raw = stream.group(1)
    if b"/FlateDecode" in body[:stream.start()]:
        limit = min(MAX_OBJSTM_BYTES, budget[0])
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(raw, limit)
        except zlib.error:
            return []
        if inflater.unconsumed_tail:  # it inflates past the limit: a bomb, or too big to be a page tree's part
            return []
        budget[0] -= len(raw)
    header = raw[:int(first.group(1))].split()
    try:
        pairs = [(int(header[i]), int(header[i + 1])) for i in range(0, min(len(header), 2 * int(count.group(1))) - 1, 2)]
    except ValueError:  # a damaged header: its objects cannot be located
        return []
    out = []
    for index, (number, offset) in enumerate(pairs):
        start = int(first.group(1)) + offset
        end = int(first.group(1)) + pairs[index + 1][1] if index + 1 < len(pairs) else len(raw)
        out.append((number, raw[start:end]))
    return out


def _walk(objects: dict[int, bytes], root: int) -> int | None:
    """Leaves (/Type /Page) under the page tree node `root`; None when a node is missing. Cycle-safe."""
    seen: set[int] = set()
    stack = [root]
    leaves = 0
    while stack:
        number = stack.pop()
        if number in seen or len(seen) > MAX_TREE_NODES:
            continue
        seen.add(number)
        body = objects.get(number)
        if body is None:
            return None
        if re.search(rb"/Type\s*/Pages\b", body):
            kids = re.search(rb"/Kids\s*\[(.*?)\]", body, re.S)
            if kids:
                stack.extend(int(n) for n in re.findall(_REF, kids.group(1)))
        elif re.search(rb"/Type\s*/Page\b", body):
            leaves += 1
    return leaves
