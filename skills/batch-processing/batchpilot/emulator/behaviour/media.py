"""The emulator's own reading of `document` and `image` blocks: checks (400s, errored batch lines) and tokens.

Written apart from the client's `prepare.media` on purpose, so the two can disagree: here a PDF's pages are
the `/Type /Page` objects in the file (the client walks the page tree from the catalog), and an image's
size comes from its header bytes decoded out of the base64 string. A `file` source is resolved through
the emulated Files API (`state.files_store`); an unknown id is a 400 / an errored line, as on the API.

The rules, as the platform docs give them:
* PDFs: at most 100 pages, no encryption, media type application/pdf
  (https://platform.claude.com/docs/en/build-with-claude/pdf-support); each page costs its text plus an
  image of the page, 1,500-3,000 tokens, counted here as 2,250;
* images: image/jpeg, png, gif or webp, at most 8000 x 8000 px, a base64 string of at most 5 MB; tokens
  = width x height / 750 after scaling to a long edge of 1568 px and ~1.15 MP
  (https://platform.claude.com/docs/en/build-with-claude/vision).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Any, Callable, Iterator

PAGE_TOKENS = 2_250
MAX_PAGES = 100
MAX_IMAGE_B64 = 5 * 1024 * 1024
MAX_SIDE = 8000
LONG_EDGE = 1568
MAX_PIXELS = 1_150_000
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")

Lookup = Callable[[str], "bytes | None"]  # file_id -> its bytes, or None when there is no such file


def _blocks(params: Any) -> Iterator[tuple[str, dict]]:
    for i, message in enumerate(params.get("messages") or [] if isinstance(params, dict) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            if isinstance(block, dict) and block.get("type") in ("document", "image"):
                yield f"messages.{i}.content.{j}", block


def references_files(params: Any) -> bool:
    return any((b.get("source") or {}).get("type") == "file" for _, b in _blocks(params))


def _bytes(where: str, block: dict, files: Lookup) -> tuple[bytes | None, str | None, str | None]:
    """(data, media type, problem) of a block's source."""
    source = block.get("source")
    if not isinstance(source, dict):
        return None, None, f"{where}.source: Field required"
    kind = source.get("type")
    if kind == "base64":
        data = source.get("data")
        if not isinstance(data, str):
            return None, None, f"{where}.source.data: Field required"
        if block["type"] == "image" and len(data) > MAX_IMAGE_B64:
            return None, None, f"{where}.source.base64: image exceeds 5 MB maximum: {len(data)} bytes > {MAX_IMAGE_B64} bytes"
        try:
            return base64.b64decode(data, validate=True), source.get("media_type"), None
        except (binascii.Error, ValueError):
            return None, None, f"{where}.source.data: invalid base64 data"
    if kind == "file":
        file_id = source.get("file_id")
        data = files(file_id) if isinstance(file_id, str) else None
        if data is None:
            return None, None, f"{where}.source.file_id: File not found: {file_id}"
        return data, None, None
    if kind in ("url", "text", "content"):
        return None, None, None  # not read by the emulator; costs nothing here
    return None, None, f"{where}.source.type: Input tag {kind!r} is not one of base64, file, url, text, content"


def _image_size(data: bytes) -> tuple[str, int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return "image/png", w, h
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return "image/gif", w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        if data[12:16] == b"VP8X":
            return "image/webp", 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if data[12:16] == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return "image/webp", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        w, h = struct.unpack("<HH", data[26:30])
        return "image/webp", w & 0x3FFF, h & 0x3FFF
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in (0xD8, 0xFF) or 0xD0 <= marker <= 0xD7:
                i += 1 if marker == 0xFF else 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return "image/jpeg", w, h
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def _image_tokens(w: int, h: int) -> int:
    factor = min(1.0, LONG_EDGE / max(w, h), math.sqrt(MAX_PIXELS / (w * h)))
    return math.ceil(max(1, int(w * factor)) * max(1, int(h * factor)) / 750)


def _block_tokens(where: str, block: dict, files: Lookup) -> tuple[int, str | None]:
    data, declared, problem = _bytes(where, block, files)
    if problem or data is None:
        return 0, problem
    if block["type"] == "document":
        if declared not in (None, "application/pdf") or not data.startswith(b"%PDF-"):
            return 0, f"{where}.source: The PDF specified was not valid." if declared in (None, "application/pdf") \
                else f"{where}.source.media_type: Input should be 'application/pdf'"
        if re.search(rb"/Encrypt\b", data):
            return 0, f"{where}: The PDF is encrypted or password-protected."
        pages = len(_PAGE.findall(data))
        if pages > MAX_PAGES:
            return 0, f"{where}: A maximum of {MAX_PAGES} PDF pages may be provided."
        return max(1, pages) * PAGE_TOKENS, None
    size = _image_size(data)
    if size is None:
        return 0, f"{where}.source: Could not process image"
    actual, w, h = size
    if declared is not None and declared not in IMAGE_TYPES:
        return 0, f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
    if declared is not None and declared != actual:
        return 0, f"{where}.source: Image does not match the provided media type {declared}"
    if max(w, h) > MAX_SIDE:
        return 0, f"{where}.source: image dimensions exceed max allowed size: {MAX_SIDE} pixels"
    return _image_tokens(w, h), None


def check_media(params: Any, files: Lookup) -> str | None:
    """The first problem with a request's documents and images, or None."""
    for where, block in _blocks(params):
        _, problem = _block_tokens(where, block, files)
        if problem:
            return problem
    return None


def media_tokens(params: Any, files: Lookup) -> int:
    """Input tokens of a request's documents and images (0 for one it cannot read)."""
    return sum(_block_tokens(where, block, files)[0] for where, block in _blocks(params))
