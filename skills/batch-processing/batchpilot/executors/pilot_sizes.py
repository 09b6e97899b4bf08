"""The sizes `run --pilot` measures and extrapolates with (executors.pilot).

A request's local estimate (`core.tokens.estimate_input_tokens`) counts an attachment as a short tag: a
document or image is priced by its pages or pixels, which the request's base64 does not show. `plan` adds
them from the item (`prepare.media.media_tokens`); so does the pilot, from items.jsonl, which records each
attachment's pages or pixels. Without them the pilot's billed/estimated ratio mixes the attachments into the
text's, and the rest, with other pages and pictures, would be scaled by the wrong ratio.

`Sizes` reads items.jsonl in step with a requests file listing the same items in the same order (pilot.jsonl
and rest-1.jsonl keep requests.jsonl's order, which is items.jsonl's), so memory stays flat whatever the job.
"""

from __future__ import annotations

import json
from pathlib import Path

from batchpilot.core.tokens import REQUEST_OVERHEAD, estimate_input_tokens
from batchpilot.prepare.media import media_tokens


def _attachment_tokens(record: dict) -> int:
    media = record.get("media")
    if not isinstance(media, dict):
        return 0
    return media_tokens(str(media.get("kind")), media.get("pages"), media.get("width"), media.get("height"))


class Sizes:
    """Estimated sizes of the requests of one file, in order: `input(cid, params)` and `item(cid, params)`."""

    def __init__(self, items_path: Path):
        self._fh = open(items_path, "rb")
        self._cid: str | None = None
        self._tokens = 0

    def __enter__(self) -> "Sizes":
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def attachment(self, custom_id: str) -> int:
        """The tokens of `custom_id`'s attachment (0 for a text item, or one items.jsonl does not list next)."""
        while self._cid != custom_id:
            line = self._fh.readline()
            if not line:
                return 0  # not listed (a run from before items carried media figures): the tag alone
            record = json.loads(line)
            self._cid, self._tokens = str(record.get("custom_id")), _attachment_tokens(record)
        return self._tokens

    def input(self, custom_id: str, params: dict) -> int:
        """The request's estimated input tokens, its attachment's pages or pixels included."""
        return estimate_input_tokens(params) + self.attachment(custom_id)

    def item(self, custom_id: str, params: dict) -> int:
        """The item's own size, what its answer grows with: its messages and attachment, without the
        instructions, schema and tools every request shares (counted in, they would squeeze the sizes
        together on a log scale and steepen the fitted exponent, over-predicting long items)."""
        messages = {"model": params.get("model"), "messages": params.get("messages") or []}
        return estimate_input_tokens(messages) - REQUEST_OVERHEAD + self.attachment(custom_id)

