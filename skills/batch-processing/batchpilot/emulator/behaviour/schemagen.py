"""Build a JSON value that validates against a JSON Schema, deterministically from a key.

Covers what structured-output schemas use: type (and type lists), properties/required,
additionalProperties, enum, const, arrays with items/prefixItems/minItems/maxItems/uniqueItems, nested
objects, local $ref ($defs / definitions), anyOf/oneOf (first branch), allOf (merged), string formats
(date, date-time, time, email, uri, uuid), minLength/maxLength, and numeric bounds. A `pattern` is not
solved; the value is then a plain string.

How long an answer is follows VERBOSITY (a context variable the responder sets per request from the item's
length and the request's hash): arrays without a fixed size get about 2 x verbosity items (at least one) and free-text
strings about 7 x verbosity words, so answer lengths vary by template (its schema) and by item, as a real
model's do, and a pilot has something to measure.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from typing import Any

MAX_DEPTH = 12
# A schema may ask for more than any answer could hold; the generator stops here instead of hanging.
MAX_ITEMS = 1000
MAX_STRING = 100_000
VERBOSITY: ContextVar[float] = ContextVar("verbosity", default=1.0)
WORDS = ("alpha", "bravo", "cedar", "delta", "ember", "fjord", "gamma", "harbor", "iris", "juniper", "kestrel", "lumen")


def _num(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _resolve(schema: Any, root: dict) -> Any:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < MAX_DEPTH:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}
        node: Any = root
        for part in [p for p in ref[1:].split("/") if p]:
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        schema = node if isinstance(node, dict) else {}
        seen += 1
    return schema


def _merge_all_of(schema: dict, root: dict) -> dict:
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf") or []:
        part = _resolve(part, root)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def example(schema: Any, key: str, root: dict | None = None, depth: int = 0) -> Any:
    """A value valid for `schema`; `key` makes it deterministic (same key, same value)."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = _resolve(schema, root)
    if schema is True or not isinstance(schema, dict):
        return "value"
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][_num(key) % len(schema["enum"])]
    for union in ("anyOf", "oneOf"):
        options = schema.get(union)
        if isinstance(options, list) and options:
            # The first non-null branch: a real answer rather than null when the schema allows both.
            branch = next((o for o in options if _resolve(o, root).get("type") != "null"), options[0])
            return example(branch, key, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if depth >= MAX_DEPTH and kind in ("object", "array"):
        return {} if kind == "object" else []
    return _BUILDERS.get(kind, _string)(schema, key, root, depth)


def _object(schema: dict, key: str, root: dict, depth: int) -> dict:
    props = schema.get("properties") or {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    out: dict[str, Any] = {}
    for name in list(dict.fromkeys([*required, *props])):
        out[name] = example(props.get(name, {}), f"{key}.{name}", root, depth + 1)
    minimum = schema.get("minProperties") or 0
    extra = schema.get("additionalProperties", True)
    i = 0
    while len(out) < minimum and extra is not False and i < 100:
        out[f"extra_{i}"] = example(extra if isinstance(extra, dict) else {}, f"{key}.extra{i}", root, depth + 1)
        i += 1
    return out


def _array(schema: dict, key: str, root: dict, depth: int) -> list:
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    low = int(schema.get("minItems") or 0)
    high = schema.get("maxItems")
    # at least one item: the emulator answers every array with something to validate
    wanted = max(1, round(2 * VERBOSITY.get() + (_num(key + "/n") % 3 - 1) * 0.5))
    count = max(low, len(prefix), wanted if high is None else min(wanted, int(high)))
    if high is not None:
        count = min(count, int(high))
    count = min(count, MAX_ITEMS)
    items = schema.get("items", {})
    out: list = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else items
        value = example(sub if sub is not False else {}, f"{key}[{i}]", root, depth + 1)
        if schema.get("uniqueItems") and value in out:
            # Enum-backed items repeat; try other keys before settling for fewer items.
            for attempt in range(1, 20):
                value = example(sub, f"{key}[{i}]#{attempt}", root, depth + 1)
                if value not in out:
                    break
            else:
                if len(out) >= low:
                    break
        out.append(value)
    return out


def _string(schema: dict, key: str, root: dict, depth: int) -> str:
    n = _num(key)
    fmt = schema.get("format")
    if fmt == "date-time":
        text = f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T12:00:00Z"
    elif fmt == "date":
        text = f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}"
    elif fmt == "time":
        text = f"{n % 24:02d}:{n % 60:02d}:00Z"
    elif fmt == "email":
        text = f"{WORDS[n % len(WORDS)]}@example.com"
    elif fmt in ("uri", "url", "uri-reference"):
        text = f"https://example.com/{WORDS[n % len(WORDS)]}"
    elif fmt == "uuid":
        h = f"{n:016x}{_num(key + '/u'):016x}"
        text = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
    else:
        words = max(2, round(7 * VERBOSITY.get() * (0.6 + (n % 9) / 10)))
        text = " ".join(WORDS[(n >> (3 * i % 48)) % len(WORDS)] for i in range(words)) + f" {n % 1000}"
    low = min(int(schema.get("minLength") or 0), MAX_STRING)
    high = schema.get("maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    if high is not None and len(text) > int(high):
        text = text[: int(high)]
    return text


def _integer(schema: dict, key: str, root: dict, depth: int) -> int:
    low, high = _bounds(schema, 1)
    value = _num(key) % 100
    if low is not None:
        value = max(value, int(-(-low // 1)))
    if high is not None:
        value = min(value, int(high // 1))
    return value


def _number(schema: dict, key: str, root: dict, depth: int) -> float:
    low, high = _bounds(schema, 1e-6)
    value = (_num(key) % 1000) / 10
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return float(value)


def _bounds(schema: dict, step: float) -> tuple[float | None, float | None]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)) and not isinstance(schema["exclusiveMinimum"], bool):
        low = schema["exclusiveMinimum"] + step
    if isinstance(schema.get("exclusiveMaximum"), (int, float)) and not isinstance(schema["exclusiveMaximum"], bool):
        high = schema["exclusiveMaximum"] - step
    return low, high


_BUILDERS = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda s, k, r, d: _num(k) % 2 == 0,
    "null": lambda s, k, r, d: None,
}
