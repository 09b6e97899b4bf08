"""Reading the API's response headers: a plain lower-cased copy, and the `retry-after` a server asks for."""

from __future__ import annotations

from typing import Any, Mapping


def lower_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """A plain lower-cased copy of a header mapping (httpx headers, a dict, or None)."""
    if not headers:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def parse_retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds), or None when absent or unusable."""
    h = lower_headers(headers)
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = h.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue  # an HTTP-date: rare on this API; the bucket math decides instead
        if value >= 0:
            return value
    return None


# The Files API is a beta: its endpoints, and requests whose blocks name a file_id, carry this header
# (https://platform.claude.com/docs/en/build-with-claude/files, "To use the Files API, you'll need to include
# the beta feature header"). The SDK's `beta.files` methods do not add it by themselves.
FILES_BETA = "files-api-2025-04-14"
