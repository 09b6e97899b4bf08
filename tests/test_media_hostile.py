"""Hostile and damaged files as items: the readers stay linear and bounded, and a lying header is refused."""

from __future__ import annotations

import resource
import struct
import time
import zlib

import pytest

import media_samples as samples
from batchpilot.prepare import media

TREE = b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page>>endobj "


@pytest.mark.parametrize("filler", [b"1 0 obj ", b"trailer<< ", b"/Type/XRef "])
def test_a_damaged_pdf_of_repeated_openers_is_read_in_linear_time(filler):
    # Each opener without its closer used to send a search to the end of the file: 200 KB took 80 s.
    data = b"%PDF-1.4\n" + filler * (1_000_000 // len(filler))
    started = time.monotonic()
    pages, problem = media.pdf_pages(data)
    assert pages is None and problem.startswith("no page tree")
    assert time.monotonic() - started < 10  # well under 1 s here; quadratic took 80 s for 200 KB


def test_an_object_stream_that_inflates_to_gigabytes_is_not_inflated():
    packer, zeros = zlib.compressobj(9), bytes(1024 * 1024)
    bomb = b"".join(packer.compress(zeros) for _ in range(300)) + packer.flush()  # 300 MB of zeros in 300 KB
    data = (b"%PDF-1.5\n" + TREE + b"5 0 obj<</Type/ObjStm/N 1/First 4/Filter/FlateDecode>>stream\n" + bomb
            + b"\nendstream endobj")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert media.pdf_pages(data) == (1, None)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 64, f"the reader's peak grew by {grown_mb:.0f} MB"


def test_an_encrypt_entry_in_a_later_update_or_an_xref_stream_is_found():
    update = samples.pdf(2) + b"9 0 obj<</Filter/Standard>>endobj\ntrailer\n<</Size 10/Root 1 0 R/Encrypt 9 0 R>>\nstartxref\n9\n%%EOF\n"
    assert "encrypted" in media.pdf_pages(update)[1]
    xref = b"%PDF-1.5\n" + TREE + b"9 0 obj<</Encrypt 8 0 R/Type/XRef/Size 3>>stream\nxx\nendstream endobj"
    assert "encrypted" in media.pdf_pages(xref)[1]


def test_a_damaged_object_stream_header_is_skipped_not_a_crash():
    data = b"%PDF-1.5\n" + TREE + b"5 0 obj<</Type/ObjStm/N 2/First 8>>stream\n1 0 x 5 <<>> <<>>\nendstream endobj"
    assert media.pdf_pages(data) == (1, None)


def _png_claiming(width: int, height: int) -> bytes:
    real = samples.png(1, 1)
    return real[:16] + struct.pack(">II", width, height) + real[24:]


@pytest.mark.parametrize("name, data", [
    ("zero.png", _png_claiming(0, 0)),
    ("flat.jpg", samples.jpeg(10, 0)),
    ("zero.gif", samples.gif(0, 7)),
    ("short.webp", b"RIFF\0\0\0\0WEBPVP8X"),
])
def test_an_image_whose_header_claims_no_pixels_is_refused_with_its_figures(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    refusal = media.inspect(str(tmp_path / name))
    assert isinstance(refusal, media.Refusal) and refusal.reason == "unreadable_image", refusal
