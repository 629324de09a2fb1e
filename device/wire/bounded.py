"""JSON from the wire, bounded before it is parsed.

Python's `json.loads` recurses once per nesting level: a message of 100,000 `[` raises RecursionError deep in
the parser, and a message of a few thousand levels inside a valid-looking envelope costs stack and time before
any validation runs. Every consumer of the broker (backend, terminal, gate listener, tools) therefore checks a
payload's size and nesting depth on the raw bytes first, then parses with NaN/Infinity (and numbers beyond a double, like 1e400) refused, and gets one
`PayloadError` with a stable code for anything wrong, never a parser exception.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

# No wire payload of faceonly nests deeper than ~8 (event -> liveness -> steps -> step); 32 leaves room.
DEFAULT_MAX_DEPTH = 32

# A JSON string literal, escapes included; removed before brackets are counted.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_CLOSE = np.zeros(256, dtype=np.int8)
_CLOSE[[ord("]"), ord("}")]] = 1

PAYLOAD_CODES = {
    "payload.too_large": "the payload is larger than the consumer accepts",
    "payload.too_deep": "the payload nests deeper than the consumer accepts",
    "payload.not_utf8": "the payload is not UTF-8 text",
    "payload.not_json": "the payload is not JSON text (or uses NaN/Infinity)",
}


class PayloadError(ValueError):
    """A payload refused before or while it was parsed: `code` is a key of PAYLOAD_CODES; the text never
    repeats the payload itself."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text, counted outside string literals (vectorised: a 64 KiB
    payload costs well under a millisecond)."""
    stripped = _STRING.sub(b'""', raw)
    if not stripped:
        return 0
    codes = np.frombuffer(stripped, dtype=np.uint8)
    steps = _OPEN[codes].astype(np.int32) - _CLOSE[codes]
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _finite_float(token: str) -> float:
    # `1e400` is valid JSON text that Python reads as inf: refused like the Infinity literal it becomes.
    value = float(token)
    if not math.isfinite(value):
        raise ValueError("a number beyond the range of a double is not JSON")
    return value


def loads_bounded(
    raw: bytes | bytearray | memoryview, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """The parsed JSON value of `raw`, or PayloadError; size and depth are checked before parsing."""
    data = bytes(raw)
    if len(data) > max_bytes:
        raise PayloadError("payload.too_large", f"payload is {len(data)} bytes; the limit is {max_bytes}")
    depth = nesting_depth(data)
    if depth > max_depth:
        raise PayloadError("payload.too_deep", f"payload nests {depth} levels; the limit is {max_depth}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload.not_utf8", "payload is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("payload.not_json", f"payload is not JSON text: {str(exc)[:120]}") from None
