"""A job: one template, its variables, one model and one item source, ready to be planned or prepared.

`open_job` checks everything that can be checked before reading items (template, variables, model,
max_tokens, prices) and returns a `Job` whose `requests()` streams `(item, params)` pairs. An unknown model
fails closed here unless the caller gives explicit prices, because every spending command needs a price to
reserve its budget against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

from batchpilot.core.errors import BatchpilotError
from batchpilot.prepare.changes import iter_change_items
from batchpilot.prepare.gitdiff import is_git_source
from batchpilot.prepare.items import Item, load_items
from batchpilot.prepare.limits import DEFAULT_MAX_ITEM_BYTES
from batchpilot.core.models import MODELS, Prices, find_model, prices_for
from batchpilot.prepare.build import RequestBuilder
from batchpilot.prepare.templates import Template, load_template, resolve_variables
from batchpilot.prepare.uploads import choose_upload


@dataclass
class Job:
    template: Template
    variables: dict[str, str]
    model: str
    max_tokens: int
    mode: str
    items_src: str
    prices: Prices | None
    builder: RequestBuilder
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    content_field: str | None = None
    explicit_prices: bool = False
    skipped: list = field(default_factory=list)
    file_field: str | None = None
    upload: str = "inline"  # how attachments travel: inline (base64) or files (Files API uploads)
    keep_uploads: bool = False
    header: dict | None = None  # a CSV's header row, once read: {"row": "file:1", "columns": [...]}
    cache: str = "auto"

    def items(self) -> Iterator[Item]:
        """The items (from a change for a `git:` source), streamed; skipped ones are appended to `self.skipped` as
        (source, reason, detail), and a CSV's header row is noted in `self.header` (a file without one would
        silently lose its first row)."""
        if is_git_source(self.items_src):
            return iter_change_items(self.items_src, self.max_item_bytes, lambda s, r, d: self.skipped.append((s, r, d)))
        return load_items(self.items_src, lambda s, r, d: self.skipped.append((s, r, d)),
                          max_item_bytes=self.max_item_bytes, content_field=self.content_field,
                          file_field=self.file_field, inline=self.upload != "files",
                          on_header=lambda s, cols: setattr(self, "header", {"row": s, "columns": cols}))

    def settings(self) -> dict:
        """Everything besides the items that determines the run's requests (its inputs hash)."""
        return {
            "template_hash": self.template.content_hash,
            "variables": self.variables,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "mode": self.mode,
            "content_field": self.content_field,
            "max_item_bytes": self.max_item_bytes,
            **({"file_field": self.file_field} if self.file_field else {}),
            **({"upload": self.upload} if self.upload != "inline" else {}),
            # only a forced choice: the inputs hash of a default run stays what it was
            **({"cache": self.cache} if self.cache != "auto" else {}),
        }

    def manifest(self) -> dict:
        """The run.json fields that describe the job."""
        return {
            "template": {"name": self.template.name, "hash": self.template.content_hash, "path": str(self.template.path)},
            "model": self.model,
            "max_tokens": self.max_tokens,
            "output_style": self.template.output_style,
            "mode": self.mode,
            "variables": self.variables,
            "items_source": self.items_src,
            "prices": None if self.prices is None else {**self.prices.as_manifest(), "explicit": self.explicit_prices},
            "cache": self.builder.cache_choice,
            "subagent_model": self.template.subagent_model or (find_model(self.model).tier if find_model(self.model) else None),
            "upload": self.upload,
            "keep_uploads": self.keep_uploads,
        }


def open_job(
    template_ref: str,
    items_src: str,
    model: str | None = None,
    max_tokens: int | None = None,
    variables: dict[str, str] | None = None,
    mode: str = "batch",
    price_in: float | None = None,
    price_out: float | None = None,
    require_price: bool = True,
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
    content_field: str | None = None,
    file_field: str | None = None,
    upload: str = "auto",
    keep_uploads: bool = False,
    cache: str = "auto",
) -> Job:
    """Check the job's settings and return it; raises BatchpilotError for anything wrong.

    `upload`: inline, files, or auto (files when a batch job's inline attachments would fill the batch body
    limit many times over, `uploads.choose_upload`)."""
    template = load_template(template_ref)
    values = resolve_variables(template, variables or {})
    if model is not None and not model.strip():
        raise BatchpilotError("--model is empty", f"leave it out to use the template's model ({template.model})")
    model = model or template.model
    max_tokens = max_tokens if max_tokens is not None else template.max_tokens
    for flag, price in (("--price-in", price_in), ("--price-out", price_out)):
        if price is not None and not math.isfinite(price):
            raise BatchpilotError(f"{flag} {price} is not a finite number",
                                  "give the price in USD per million tokens, e.g. --price-in 3 --price-out 15")
    if (price_in is None) != (price_out is None):
        raise BatchpilotError("--price-in and --price-out go together", "give both, in USD per million tokens")
    prices = prices_for(model, price_in, price_out)
    if prices is None and require_price:
        raise BatchpilotError(
            f"unknown model {model!r}: no price, so its cost cannot be bounded",
            f"use a known model ({', '.join(sorted(MODELS))}) "
            "or give --price-in and --price-out in USD per million tokens",
        )
    known = find_model(model)
    if known is not None and max_tokens > known.max_output:
        raise BatchpilotError(f"max_tokens {max_tokens} is above {known.max_output}, the limit of {model}",
                              f"use --max-tokens {known.max_output} or less")
    if upload == "auto":
        upload = choose_upload(items_src, mode, file_field)
    elif upload == "files" and mode != "batch":
        raise BatchpilotError(f"--upload files works with --mode batch, not {mode}",
                              "leave --upload out: direct mode sends PDFs and images inline, and agents and headless "
                              "modes hand the subagent the file's path")
    builder = RequestBuilder(template, values, model, max_tokens, mode, upload=upload == "files", cache=cache)
    # The builder's template is bound to the variables: its hash covers a schema chosen by a variable.
    return Job(builder.template, values, model, max_tokens, mode, items_src, prices, builder, max_item_bytes, content_field,
               explicit_prices=price_in is not None, file_field=file_field, upload=upload, keep_uploads=keep_uploads,
               cache=cache)

