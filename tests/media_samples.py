"""Sample documents and images for the tests, written byte by byte (no binary blobs in the repository).

`pdf(pages)` is a valid PDF with a page tree of `pages` leaves (nested in groups of 10, so the tree has
depth) and a correct cross-reference table; `encrypted=True` adds an /Encrypt entry to its trailer, which
is how an encrypted PDF announces itself. `pad` adds a stream of that many bytes (for size tests). `png`
is a real zlib-compressed PNG; `jpeg` a baseline JPEG header with its SOF0 frame size; `gif` a GIF89a.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def pdf(pages: int, encrypted: bool = False, pad: int = 0, text: str = "Invoice total: 42.00 EUR") -> bytes:
    objects: list[bytes] = []  # object i+1
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"")  # the root Pages node, filled in below
    groups = [list(range(start, min(start + 10, pages))) for start in range(0, pages, 10)]
    group_ids, page_ids = [], []
    next_id = 3
    layout = []
    for group in groups:
        gid = next_id
        next_id += 1
        ids = list(range(next_id, next_id + len(group)))
        next_id += len(group)
        group_ids.append(gid)
        layout.append((gid, ids))
        page_ids += ids
    content_id = next_id
    pad_id = next_id + 1 if pad else None
    by_id: dict[int, bytes] = {}
    by_id[1] = objects[0]
    kids = " ".join(f"{g} 0 R" for g in group_ids).encode()
    by_id[2] = b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(pages).encode() + b" >>"
    for gid, ids in layout:
        inner = " ".join(f"{i} 0 R" for i in ids).encode()
        by_id[gid] = b"<< /Type /Pages /Parent 2 0 R /Kids [" + inner + b"] /Count " + str(len(ids)).encode() + b" >>"
        for i in ids:
            by_id[i] = (b"<< /Type /Page /Parent " + str(gid).encode() + b" 0 R /MediaBox [0 0 612 792] /Contents "
                        + str(content_id).encode() + b" 0 R >>")
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    by_id[content_id] = b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
    if pad_id:
        filler = bytes((i * 7) & 0x7F for i in range(pad))
        by_id[pad_id] = b"<< /Length " + str(pad).encode() + b" >>\nstream\n" + filler + b"\nendstream"
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(by_id):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + by_id[number] + b"\nendobj\n"
    size = max(by_id) + 1
    if encrypted:
        offsets[size] = len(out)
        out += f"{size} 0 obj\n<< /Filter /Standard /V 2 /R 3 /O (x) /U (y) /P -4 >>\nendobj\n".encode()
        size += 1
    xref = len(out)
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    for number in range(1, size):
        out += f"{offsets.get(number, 0):010d} 00000 n \n".encode()
    trailer = f"<< /Size {size} /Root 1 0 R"
    if encrypted:
        trailer += f" /Encrypt {size - 1} 0 R /ID [<00> <00>]"
    out += f"trailer\n{trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes((x * 3 + y) & 0xFF for x in range(width * 3)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
            + b",\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02\x44\x01\x00;")


def inbox(root: Path) -> Path:
    """The acceptance folder: 3 PDFs (1, 5, 120 pages), 2 PNGs, a JPEG, a GIF, an encrypted PDF and a .bin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "contracts").mkdir(exist_ok=True)
    (root / "contracts" / "one.pdf").write_bytes(pdf(1))
    (root / "contracts" / "five.pdf").write_bytes(pdf(5))
    (root / "contracts" / "long.pdf").write_bytes(pdf(120))
    (root / "locked.pdf").write_bytes(pdf(2, encrypted=True))
    (root / "shot-a.png").write_bytes(png(64, 48))
    (root / "shot-b.png").write_bytes(png(2000, 1000))  # above 1568 px: the API downscales it
    (root / "scan.jpg").write_bytes(jpeg(1200, 1600))
    (root / "anim.gif").write_bytes(gif(32, 32))
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    return root
