"""Requests: template × item → one Message Batches request line `{custom_id, params}`.

`params` is a complete Messages API body, used as is by the batch executor and by the direct executor.
Three structured-output styles, in order of preference:

* `json_schema` — the API's native `output_config.format = {type: json_schema, schema}`;
* `tool` — a single tool (`emit_result`) whose input schema is the template's schema, forced by `tool_choice`;
* `prompt` — the schema is appended to the instructions and the answer's JSON is extracted at merge time.

The builder works on the template bound to the run's variables (`templates.bind_variables`), so a schema
taken from a variable is what the requests carry and what the run copies to `schema.json`. In the
`json_schema` style a schema the API would refuse (`schema_rules.api_schema_problems`) is an error here, at
plan/prepare time, rather than one errored request per item; the `tool` and `prompt` styles take any schema.

A document or image item's user message is a list of content blocks: its `document` / `image` block
(base64, or with `upload=True` a Files API `file` source whose id is `PENDING_UPLOAD` + the file's sha256
until the executor's upload step puts the real id in) and the rendered text. Where the block goes is the
template's choice: at a `{{item.attachment}}` placeholder in user.md, or by default first, then the text, the
order the docs recommend (https://platform.claude.com/docs/en/build-with-claude/vision, images before text).

The style is chosen per model: a `tool` template on a model that answers forced tool use with a 400 (the
5.5 generation and Fable 5.1, `core.models.Model.forced_tool`) is sent in the `json_schema` style when the
API can take its schema, else in the `prompt` style; `style_note` says so, and run.json records the style
sent.

The shared system block carries `cache_control` when the cacheable prefix (tools + system) is at least the
model's minimum cacheable length (counted without the tokenizer factor: an underestimate only leaves a prefix
uncached) and the cache choice (`--cache`, `cache_choice`) wants it: `auto` takes the 5-minute cache in
direct mode, where requests follow one another, and in batch mode the cheapest of none, 5 minutes and 1 hour
by expected value for the job's size at the assumed in-batch hit rate (`prepare.estimates.batch_cache_choice`:
small batches 5 minutes, large ones 1 hour, a single request none). The size is known only once the items have
streamed, so requests are built for a large batch and `retarget` + `restamp` re-mark them when the count
changes the choice. `1h`, `5m` and `none` force a choice. `cache_choice` says which and why, and run.json
records it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.models import accepts_forced_tool, find_model
from batchpilot.prepare.estimates import batch_cache_choice
from batchpilot.prepare.schema_rules import api_schema_problems
from batchpilot.prepare.templates import TEMPLATES_DIR, Template, bind_variables, render
from batchpilot.core.tokens import estimate_json, estimate_text

TOOL_NAME = "emit_result"
ATTACHMENT_RE = re.compile(r"\{\{\s*item\.attachment\s*\}\}")
PENDING_UPLOAD = "pending-upload-sha256-"  # a file source's id before the upload step resolves it
CACHE_CHOICES = ("auto", "1h", "5m", "none")
DEFAULT_MIN_CACHE_TOKENS = 1024
PROMPT_STYLE_SUFFIX = (
    "\n\n## Output format\n\nReply with exactly one JSON object that validates against this JSON Schema. "
    "No prose before or after it, no code fences.\n\n{schema}\n"
)


def system_text(template: Template, variables: dict[str, str]) -> str:
    """The shared instructions for this template and these variables (identical for every item)."""
    text = render(template.system, None, variables).strip()
    if template.output_style == "prompt":
        text += PROMPT_STYLE_SUFFIX.format(schema=json.dumps(template.schema, indent=2))
    return text


def tool_definition(template: Template) -> dict:
    """The forced tool of the `tool` style: its input schema is the template's output schema."""
    return {
        "name": TOOL_NAME,
        "description": "Record the result for this item. Call it exactly once with the complete result.",
        "input_schema": template.schema,
    }


def check_api_schema(template: Template) -> None:
    """Refuse a json_schema-style template whose schema the API's native JSON output would reject."""
    problems = api_schema_problems(template.schema)
    if problems:
        more = f" (and {len(problems) - 1} more: `batchpilot templates show` lists them)" if len(problems) > 1 else ""
        copy = ""
        if template.path.parent == TEMPLATES_DIR:
            copy = f" (in a copy: `batchpilot templates init my-{template.name} --from {template.name}`)"
        raise BatchpilotError(
            f"{template.schema_path or 'schema.json'}: the API's JSON-schema output cannot use this schema: {problems[0]}{more}",
            'fix the schema (references/templates.md, "Schema rules"), or set "output_style": "tool" in template.json, '
            f"which takes any JSON Schema on a model that accepts forced tool use{copy}",
        )


def style_for_model(template: Template, model: str) -> tuple[Template, str | None]:
    """The template with an output style `model` accepts, and a sentence when it differs from the template's.

    Forced tool use "returns an error" on Sonnet 5.5, Opus 5.5 and Fable 5.1
    (https://platform.claude.com/docs/en/models/sonnet-5-5/whats-new-sonnet-5-5,
    https://platform.claude.com/docs/en/models/opus-5-5/overview), so every request of a `tool` run would fail.
    """
    if template.output_style != "tool" or accepts_forced_tool(model):
        return template, None
    style = "prompt" if api_schema_problems(template.schema) else "json_schema"
    note = (f"{model} refuses forced tool use (tool_choice type tool), so the requests use the {style!r} "
            "output style instead of the template's 'tool'")
    return dataclasses.replace(template, output_style=style), note


def choose_cache(cache: str, mode: str, eligible: bool, model: Any, requests: int | None = None) -> tuple[str | None, str]:
    """(the TTL to mark the shared instructions with, or None; why). `requests`: the job's size when known
    (None while the items are still streaming: a large batch is assumed until the count is in)."""
    if not eligible:
        return None, "the shared instructions are below the model's minimum cacheable length"
    if cache == "none":
        return None, "--cache none"
    if cache in ("1h", "5m"):
        return cache, f"--cache {cache}"
    if mode != "batch":
        return "5m", "direct requests follow one another, so the 5-minute cache stays warm"
    read = model.read_multiplier if model else 0.1
    write_5m, write_1h = (model.write_5m, model.write_1h) if model else (1.25, 2.0)
    choice, _, why = batch_cache_choice(requests, write_5m, write_1h, read)
    return (None if choice == "none" else choice), f"{'no cache' if choice == 'none' else choice + ' cache'}: {why}"


class RequestBuilder:
    """Builds request params for one run; the shared parts are computed once."""

    def __init__(self, template: Template, variables: dict[str, str], model: str, max_tokens: int, mode: str = "batch",
                 upload: bool = False, cache: str = "auto"):
        template, self.style_note = style_for_model(bind_variables(template, variables), model)
        if template.output_style == "json_schema":
            check_api_schema(template)
        self.template = template
        self.variables = variables
        self.model = model
        self.max_tokens = max_tokens
        self.system = system_text(template, variables)
        self.tools = [tool_definition(template)] if template.output_style == "tool" else None
        known = find_model(model)
        min_cache = known.min_cache_tokens if known else DEFAULT_MIN_CACHE_TOKENS
        prefix_tokens = estimate_text(self.system) + sum(estimate_json(t) for t in self.tools or [])
        self._cache_args = (cache, mode, prefix_tokens >= min_cache, known)
        self._set_cache(*choose_cache(*self._cache_args))
        self.upload = upload

    def _set_cache(self, ttl: str | None, why: str) -> None:
        self.cache_ttl = ttl
        self.cached = ttl is not None
        self.cache_choice = {"ttl": ttl or "none", "why": why}

    def retarget(self, requests: int) -> bool:
        """Choose the cache again now that the job's size is known; True when the TTL changed, and every
        request built so far must then be `restamp`ed."""
        before = self.cache_ttl
        self._set_cache(*choose_cache(*self._cache_args, requests=requests))
        return self.cache_ttl != before

    def restamp(self, params: dict) -> dict:
        """`params` (built by this builder) with its instructions' cache mark set to the current choice."""
        return {**params, "system": self.system_blocks()}

    def system_blocks(self) -> list[dict]:
        block: dict[str, Any] = {"type": "text", "text": self.system}
        if self.cached:
            block["cache_control"] = {"type": "ephemeral", "ttl": self.cache_ttl}
        return [block]

    def params(self, item: Any) -> dict:
        """The Messages API body for one item."""
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": self.system_blocks(),
            "messages": [{"role": "user", "content": self.user_content(item)}],
        }
        style = self.template.output_style
        if style == "json_schema":
            params["output_config"] = {"format": {"type": "json_schema", "schema": self.template.schema}}
        elif style == "tool":
            params["tools"] = self.tools
            params["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return params

    def user_content(self, item: Any) -> str | list[dict]:
        """The user message: text, or for an attachment its block placed where the template says."""
        media = getattr(item, "media", None)
        if media is None:
            return render(ATTACHMENT_RE.sub("", self.template.user_for(item)), item, self.variables).strip()
        parts = ATTACHMENT_RE.split(self.template.user_for(item), maxsplit=1)
        before, after = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        texts = [render(t, item, self.variables).strip() for t in (before, after)]
        blocks = [{"type": "text", "text": texts[0]}] if texts[0] else []
        blocks.append(attachment_block(media, self.upload))
        if texts[1]:
            blocks.append({"type": "text", "text": texts[1]})
        return blocks

    def request(self, item: Any) -> dict:
        """One requests.jsonl line."""
        return {"custom_id": item.custom_id, "params": self.params(item)}


def attachment_block(media: Any, upload: bool) -> dict:
    """The `document` / `image` block of one attachment (a `prepare.media.Media`).

    Base64 sources: https://platform.claude.com/docs/en/build-with-claude/pdf-support and .../vision;
    `file` sources (a Files API file_id): https://platform.claude.com/docs/en/build-with-claude/files.
    """
    if upload:
        return {"type": media.kind, "source": {"type": "file", "file_id": PENDING_UPLOAD + media.sha256}}
    try:
        with open(media.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BatchpilotError(f"cannot read {media.path}: {exc.strerror or exc}", "check the file, then prepare again") from None
    if hashlib.sha256(data).hexdigest() != media.sha256:
        raise BatchpilotError(f"{media.path} changed while the run was being prepared", "prepare the run again")
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": media.kind, "source": {"type": "base64", "media_type": media.media_type, "data": encoded}}
