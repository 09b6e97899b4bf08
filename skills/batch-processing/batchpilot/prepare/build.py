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

The shared system block carries `cache_control` when the cacheable prefix (tools + system) is at least the
model's minimum cacheable length; batch jobs use the 1-hour TTL, because a batch runs longer than 5 minutes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from batchpilot.core.errors import BatchpilotError
from batchpilot.core.models import find_model
from batchpilot.prepare.schema_rules import api_schema_problems
from batchpilot.prepare.templates import TEMPLATES_DIR, Template, bind_variables, render
from batchpilot.core.tokens import estimate_json, estimate_text

TOOL_NAME = "emit_result"
ATTACHMENT_RE = re.compile(r"\{\{\s*item\.attachment\s*\}\}")
PENDING_UPLOAD = "pending-upload-sha256-"  # a file source's id before the upload step resolves it
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


def cache_ttl_for_mode(mode: str) -> str:
    """Batches outlive a 5-minute cache entry, so batch mode writes the 1-hour one."""
    return "1h" if mode == "batch" else "5m"


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
            f"which takes any JSON Schema{copy}",
        )


class RequestBuilder:
    """Builds request params for one run; the shared parts are computed once."""

    def __init__(self, template: Template, variables: dict[str, str], model: str, max_tokens: int, mode: str = "batch",
                 upload: bool = False):
        template = bind_variables(template, variables)
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
        self.cached = prefix_tokens >= min_cache
        self.cache_ttl = cache_ttl_for_mode(mode)
        self.upload = upload

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
