"""Timestamps as the run directory and the receipts write them."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    """UTC now, RFC 3339 with microseconds (the API's style)."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
