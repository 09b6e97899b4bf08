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

_OBJ = re.compile(rb"(\d+)\s+(\d+)\s+obj\b(.*?)\bendobj", re.S)
_REF = rb"(\d+)\s+\d+\s+R"
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\n?endstream", re.S)
MAX_TREE_NODES = 1_000_000


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
    """An /Encrypt entry in a trailer dictionary, or in a cross-reference stream's dictionary."""
    for match in re.finditer(rb"trailer\s*<<", data):
        end = data.find(b"startxref", match.end())
        if b"/Encrypt" in data[match.end():end if end > 0 else match.end() + 4096]:
            return True
    for match in re.finditer(rb"/Type\s*/XRef\b", data):
        start = data.rfind(b"obj", 0, match.start())
        stop = data.find(b"stream", match.end())
        if b"/Encrypt" in data[max(start, 0):stop if stop > 0 else match.end()]:
            return True
    return False


def _objects(data: bytes) -> dict[int, bytes]:
    """Object number -> body (later definitions win, as in an incremental update), object streams unpacked."""
    objects: dict[int, bytes] = {}
    for match in _OBJ.finditer(data):
        objects[int(match.group(1))] = match.group(3)
    for body in list(objects.values()):
        if re.search(rb"/Type\s*/ObjStm\b", body):
            for number, inner in _object_stream(body):
                objects.setdefault(number, inner)
    return objects


def _object_stream(body: bytes) -> list[tuple[int, bytes]]:
    stream = _STREAM.search(body)
    first = re.search(rb"/First\s+(\d+)", body)
    count = re.search(rb"/N\s+(\d+)", body)
    if not (stream and first and count):
        return []
    raw = stream.group(1)
    if b"/FlateDecode" in body[:stream.start()]:
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            return []
    header = raw[:int(first.group(1))].split()
    pairs = [(int(header[i]), int(header[i + 1])) for i in range(0, min(len(header), 2 * int(count.group(1))) - 1, 2)]
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
