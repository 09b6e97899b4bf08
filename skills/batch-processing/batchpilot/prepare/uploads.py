"""Whether a job's attachments travel inline (base64 in every request) or as Files API uploads.

`--upload inline` puts each PDF or image in its request as base64, which inflates it by a third
(4 bytes per 3); `--upload files` uploads each distinct file once and the requests carry its `file_id`
(https://platform.claude.com/docs/en/build-with-claude/files; batches can reference uploaded files like any
Messages request). `auto`, the default, picks files for a batch job whose inline payload would be more than
`AUTO_FACTOR` times the 256 MB batch body limit
(https://platform.claude.com/docs/en/build-with-claude/batch-processing, "Batch limitations"), where the
uploads save re-sending gigabytes; inline everywhere else. The estimate stats the files and reads their
first bytes only.
"""

from __future__ import annotations

import math
import os

from batchpilot.prepare.items import candidate_files
from batchpilot.prepare.media import sniff_file

UPLOAD_CHOICES = ("auto", "inline", "files")
BATCH_BODY_BYTES = 256 * 1024 * 1024
AUTO_FACTOR = 4


def inline_payload_bytes(items_src: str) -> int:
    """Base64 bytes the attachments of a glob or directory source would add to its requests."""
    total = 0
    for path in candidate_files(items_src):
        try:
            if sniff_file(path):
                total += 4 * math.ceil(os.path.getsize(path) / 3)
        except OSError:
            continue  # the item reader reports it
    return total


def choose_upload(items_src: str, mode: str, file_field: str | None) -> str:
    """`files` for a batch job whose inline attachments would exceed the batch limit many times over."""
    if mode != "batch" or file_field:
        return "inline"
    return "files" if inline_payload_bytes(items_src) > AUTO_FACTOR * BATCH_BODY_BYTES else "inline"
