"""Read a batch-create body item by item, so a 100,000-request body never becomes 100,000 dicts at once.

`iter_requests(text)` walks `{"requests": [ … ], …}` with `json.JSONDecoder.raw_decode`, yielding each
element of the `requests` array as it is decoded; any other top-level key is decoded and ignored. It raises
`BodyError` for malformed JSON or a wrong shape, with a pydantic-style message the API would give.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class BodyError(ValueError):
    """The body is not JSON, or not an object with a `requests` list."""


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _decode(text: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as exc:
        raise BodyError(f"The request body is not valid JSON: {exc.msg} at position {exc.pos}") from None


def _expect(text: str, i: int, chars: str) -> str:
    char = text[i:i + 1]
    if not char or char not in chars:
        raise BodyError(f"The request body is not valid JSON: expected {' or '.join(chars)} at position {i}")
    return char


def iter_requests(text: str) -> Iterator[Any]:
    """Yield each element of the top-level `requests` array; BodyError on anything malformed."""
    i = _skip(text, 0)
    if text[i:i + 1] != "{":
        if not text[i:].strip():
            raise BodyError("requests: Field required")
        _decode(text, i)  # a JSON error message if it is not JSON at all
        raise BodyError("Input should be a valid dictionary or object to extract fields from")
    i = _skip(text, i + 1)
    seen = False
    if text[i:i + 1] == "}":
        i += 1
    else:
        while True:
            _expect(text, i, '"')
            key, i = _decode(text, i)
            i = _skip(text, i)
            _expect(text, i, ":")
            i = _skip(text, i + 1)
            if key == "requests" and not seen:
                seen = True
                if text[i:i + 1] != "[":
                    _decode(text, i)
                    raise BodyError("requests: Input should be a valid list")
                i = _skip(text, i + 1)
                if text[i:i + 1] == "]":
                    i += 1
                else:
                    while True:
                        item, i = _decode(text, i)
                        yield item
                        i = _skip(text, i)
                        if _expect(text, i, ",]") == "]":
                            i += 1
                            break
                        i = _skip(text, i + 1)
            else:
                _, i = _decode(text, i)
            i = _skip(text, i)
            if _expect(text, i, ",}") == "}":
                i += 1
                break
            i = _skip(text, i + 1)
    if text[_skip(text, i):]:
        raise BodyError("The request body is not valid JSON: extra data after the object")
    if not seen:
        raise BodyError("requests: Field required")
