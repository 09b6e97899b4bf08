"""Small, careful text helpers (this file is meant to be clean)."""

from __future__ import annotations


def truncate(text: str, limit: int, marker: str = "...") -> str:
    """Shorten `text` to at most `limit` characters, ending with `marker` when cut."""
    if limit < len(marker):
        raise ValueError("limit is shorter than the marker")
    if len(text) <= limit:
        return text
    return text[: limit - len(marker)] + marker


def word_count(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())
