"""Documents and images as items: what a file is (sniffed from its bytes), its pages or pixels, and its limits.

`inspect(path)` reads one file and returns a `Media` (a PDF or a PNG / JPEG / GIF / WebP image) or a
`Refusal` saying which limit it breaks, with the value; `sniff(head)` answers from the first bytes alone, so a
text file or an unknown binary costs one small read. Nothing here needs a dependency: the page count comes
from the PDF's own page tree (the catalog's /Pages node, walked through /Kids, objects in compressed object
streams included), and image dimensions from the image headers.

The API's limits, checked before anything is spent (each cited where the number is used):

* PDF: at most 100 pages and a 32 MB request, and no password or encryption
  (https://platform.claude.com/docs/en/build-with-claude/pdf-support, "Check PDF requirements");
* images: at most 8000 x 8000 px (https://platform.claude.com/docs/en/build-with-claude/vision, "General
  limits"), and a base64 string of at most 5 MB per image, which the API enforces on the encoded length;
* a Messages request, and so one batch request, is at most 32 MB of JSON
  (https://platform.claude.com/docs/en/api/overview#request-size-limits).

Costs (`media_tokens`): an image costs about width x height / 750 tokens after the API's own downscaling
to a long edge of at most 1568 px and about 1.15 megapixels (vision page, "Evaluate image size" and
"Calculate image costs"); a PDF page costs its extracted text plus an image of the page, 1,500 to 3,000
tokens a page by the PDF page ("Estimate your costs"), so a page is estimated at the middle, 2,250.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from dataclasses import asdict, dataclass

from batchpilot.prepare.pdf import pdf_pages
from batchpilot.prepare.reader import NotRegular, open_regular

PDF_MAX_PAGES = 100
REQUEST_MAX_BYTES = 32 * 1000 * 1000  # 32 MB; the decimal reading is the stricter one
IMAGE_MAX_BASE64 = 5 * 1024 * 1024
IMAGE_MAX_SIDE = 8000
IMAGE_LONG_EDGE = 1568
IMAGE_MAX_PIXELS = 1_150_000  # ~1.15 megapixels, ~1,600 tokens
PIXELS_PER_TOKEN = 750
TOKENS_PER_PAGE = 2_250
REQUEST_MARGIN = 256 * 1024  # instructions, schema and JSON around the base64 string
SNIFF_BYTES = 16

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MEDIA_TYPES = ("application/pdf", *IMAGE_TYPES)


@dataclass(frozen=True)
class Media:
    """An attachable file: its kind (`document` / `image`), media type, size, content hash and figures."""

    kind: str
    media_type: str
    path: str  # absolute, so agents and headless prompts can point at it from any directory
    bytes: int
    sha256: str
    pages: int | None = None
    width: int | None = None
    height: int | None = None

    @property
    def base64_length(self) -> int:
        return 4 * math.ceil(self.bytes / 3)

    @property
    def tokens(self) -> int:
        return media_tokens(self.kind, self.pages, self.width, self.height)

    def figures(self) -> str:
        """`5 pages` or `640x480 px`, for a plan or a prompt."""
        return f"{self.pages} page(s)" if self.kind == "document" else f"{self.width}x{self.height} px"

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Refusal:
    """Why an attachable file cannot be sent: the skip reason and a detail naming the limit and the value."""

    reason: str
    detail: str


def sniff(head: bytes) -> str | None:
    """The media type of a file from its first bytes, or None when it is none of MEDIA_TYPES."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff_file(path: str) -> str | None:
    """`sniff` of a file's first bytes (None when it cannot be read: the text reader reports that)."""
    try:
        with open_regular(path) as fh:  # the bounded reader's open: a FIFO or device is never read or waited on
            return sniff(fh.read(SNIFF_BYTES))
    except OSError:
        return None


def media_tokens(kind: str, pages: int | None, width: int | None, height: int | None) -> int:
    """Input tokens of one attachment: pages x TOKENS_PER_PAGE, or the pixel formula after downscaling."""
    if kind == "document":
        return (pages or 0) * TOKENS_PER_PAGE
    w, h = scaled(width or 0, height or 0)
    return math.ceil(w * h / PIXELS_PER_TOKEN)


def scaled(width: int, height: int) -> tuple[int, int]:
    """The size the API reads an image at: long edge <= 1568 px and <= ~1.15 MP, aspect ratio kept."""
    if width <= 0 or height <= 0:
        return 0, 0
    factor = min(1.0, IMAGE_LONG_EDGE / max(width, height), math.sqrt(IMAGE_MAX_PIXELS / (width * height)))
    return max(1, int(width * factor)), max(1, int(height * factor))


def inspect(path: str, inline: bool = True) -> Media | Refusal:
    """The file as an attachment, or why not. `inline`: sent as base64 (the request and image limits apply)."""
    try:
        size = os.path.getsize(path)
        if size > REQUEST_MAX_BYTES:
            return Refusal("oversized", f"{size} bytes > the API's 32 MB request limit")
        with open_regular(path) as fh:  # never more than the limit, even if the file grew since the size check
            data = fh.read(REQUEST_MAX_BYTES + 1)
        if len(data) > REQUEST_MAX_BYTES:
            return Refusal("oversized", "more than the API's 32 MB request limit")
    except NotRegular as exc:
        return Refusal("special", str(exc))
    except OSError as exc:
        return Refusal("unreadable", exc.strerror or str(exc))
    media_type = sniff(data[:SNIFF_BYTES])
    if media_type is None:
        return Refusal("binary", "not a PDF, PNG, JPEG, GIF or WebP")
    common = {"media_type": media_type, "path": os.path.abspath(path), "bytes": len(data),
              "sha256": hashlib.sha256(data).hexdigest()}
    b64 = 4 * math.ceil(len(data) / 3)
    if media_type == "application/pdf":
        pages, problem = pdf_pages(data)
        if problem:
            return Refusal("unreadable_pdf", problem)
        assert pages is not None
        if pages > PDF_MAX_PAGES:
            return Refusal("too_many_pages", f"{pages} pages > the API's {PDF_MAX_PAGES}-page limit per request; "
                                             f"split it into files of at most {PDF_MAX_PAGES} pages")
        if inline and b64 + REQUEST_MARGIN > REQUEST_MAX_BYTES:
            return Refusal("oversized", f"{b64} bytes of base64 > the API's 32 MB request limit; "
                                        "use --upload files or split the PDF")
        return Media("document", pages=pages, **common)
    dims = image_size(data, media_type)
    if dims is None:
        return Refusal("unreadable_image", f"no {media_type} dimensions in its header")
    width, height = dims
    if min(width, height) < 1:  # a lying header: no pixels to read, and a cost of 0 would be a wrong estimate
        return Refusal("unreadable_image", f"{width}x{height} px in its {media_type} header; a real image has at least 1x1")
    if max(width, height) > IMAGE_MAX_SIDE:
        return Refusal("too_many_pixels", f"{width}x{height} px > the API's {IMAGE_MAX_SIDE}x{IMAGE_MAX_SIDE} px limit")
    if inline and b64 > IMAGE_MAX_BASE64:
        return Refusal("oversized", f"{b64} bytes of base64 > the API's 5 MB per-image limit; "
                                    "use --upload files or shrink the image")
    return Media("image", width=width, height=height, **common)


# ------------------------------------------------------------------------------------------------ images


def image_size(data: bytes, media_type: str) -> tuple[int, int] | None:
    """(width, height) from the image's header, or None when the header is damaged."""
    try:
        if media_type == "image/png":
            if data[12:16] != b"IHDR":
                return None
            return struct.unpack(">II", data[16:24])
        if media_type == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if media_type == "image/webp":
            return _webp_size(data)
        return _jpeg_size(data)
    except struct.error:
        return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


WEBP_HEADER_BYTES = {b"VP8X": 30, b"VP8L": 25, b"VP8 ": 30}  # where each chunk's size fields end


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if len(data) < WEBP_HEADER_BYTES.get(chunk, 0):  # truncated: empty slices would read as 1x1
        return None
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None
