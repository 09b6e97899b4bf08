"""Judging: the status vocabulary of merged records, and how one result becomes a status and an error.

`judge_success` runs a succeeded answer through extraction (by output style) and schema validation: the one
judge of an answer, used by merge, repair and the executors that resume (agents, headless), so they always
agree. `open_view` opens a run for judging (its manifest, schema, validator and output style). `api_error`
turns an errored result's API error envelope into a `{type, message}` a user can act on (which types a retry
can fix is `api.failures.RETRYABLE_ERRORS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.results.extract import extract_output
from batchpilot.results.validate import OutputValidator, describe, locate_schema
from batchpilot.rundir.manifest import open_run

STATUSES = ("ok", "invalid", "errored", "expired", "canceled", "missing")
ERROR_ADVICE = {
    "overloaded_error": "the API was overloaded; retry the item",
    "api_error": "a server-side error; retry the item",
    "rate_limit_error": "rate limited; retry later or with lower concurrency",
    "timeout_error": "the request timed out; retry the item",
    "invalid_request_error": "the API rejected the request; fix what the message names before retrying",
    "request_too_large": "the request is too large; shorten or split the item",
    "authentication_error": "the API key was refused; check ANTHROPIC_API_KEY",
    "permission_error": "the API key may not use this model or feature",
    "billing_error": "a billing problem; check the account's plan and credits",
    "not_found_error": "the model or resource was not found; check the model id",
}
STATUS_ERRORS = {
    "expired": "the batch's 24-hour window ended before this request ran; retry the item",
    "canceled": "the batch was canceled before this request ran; retry the item if it is still wanted",
    "missing": "no result for this item yet (it has not run, or its results were not fetched)",
}


def api_error(result: dict) -> dict:
    """An errored result's `{type, message}`: the API's own type and message, plus what to do about it."""
    envelope = result.get("error")
    inner = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict):
        inner = envelope if isinstance(envelope, dict) else {}
    kind = str(inner.get("type") or "unknown_error")
    text = str(inner.get("message") or "the API gave no error message")
    advice = ERROR_ADVICE.get(kind, "retry the item; if it fails again, check its request")
    return {"type": kind, "message": f"{text} ({advice})"}


def judge_success(record: dict, style: str, validator: OutputValidator) -> tuple[dict | None, dict | None]:
    """(output, None) when the answer holds a valid object; else (None, error)."""
    found = extract_output(record.get("result") or {}, style)
    if found.error:
        return None, found.error
    first_errors: list[dict] = []
    for candidate in found.candidates:
        errors = validator.errors(candidate)
        if not errors:
            return candidate, None
        first_errors = first_errors or errors
    lead = "the output does not match the schema"
    if len(found.candidates) > 1:
        lead = f"none of the {len(found.candidates)} JSON objects in the answer matches the schema; the first"
    return None, {"type": "schema", "message": f"{lead}: {describe(first_errors)}", "details": first_errors}


def output_style(manifest: dict) -> str:
    """The run's structured-output style (`json_schema` when run.json names none)."""
    return str(manifest.get("output_style") or "json_schema")


@dataclass
class RunView:
    """A run opened for judging: its manifest, schema (and where it was found), validator and output style."""

    run_dir: Path
    manifest: dict
    schema: dict
    schema_source: str
    validator: OutputValidator
    style: str

    def judge(self, result: dict) -> tuple[Any, str | None]:
        """(the valid output, None) or (None, why it is not valid) for a succeeded result (`judge_success`)."""
        output, error = judge_success({"result": result}, self.style, self.validator)
        return output, None if error is None else error["message"]


def open_view(run_dir: Path) -> RunView:
    """The run at `run_dir` (as given: callers that need absolute paths resolve it first), opened for judging."""
    run_dir = Path(run_dir)
    manifest = open_run(run_dir)
    schema, source = locate_schema(run_dir, manifest)
    return RunView(run_dir, manifest, schema, source, OutputValidator(schema, source), output_style(manifest))
