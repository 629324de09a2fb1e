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
from typing import Any

import numpy as np

# No wire payload of faceonly nests deeper than ~8 (event -> liveness -> steps -> step); 32 leaves room.
DEFAULT_MAX_DEPTH = 32

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN_SQUARE, _OPEN_CURLY, _CLOSE_SQUARE, _CLOSE_CURLY = (ord(c) for c in "[{]}")

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
    """The deepest bracket nesting of a JSON text, counted outside string literals.

    A quote opens or closes a string unless an odd run of backslashes precedes it; a bracket counts when an
    even number of such quotes precedes it. Up to the first character that is not JSON this is exactly how
    the parser reads the text (after it, the parser has stopped), so the count bounds the parser's
    recursion; an unterminated string runs to the end, as the parser would read it. Vectorised: one pass
    of byte comparisons over the text, the rest over the positions of quotes, backslashes and brackets
    only (a 1 MB base64 string costs about as much as parsing it; a regex over string literals cost 1 ms
    per 8 KB event).
    """
    codes = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(codes == _QUOTE)
    slashes = np.flatnonzero(codes == _BACKSLASH)
    if quotes.size and slashes.size:
        # Each backslash's run start; a quote right after a run of odd length is escaped.
        starts = np.ones(slashes.size, dtype=bool)
        starts[1:] = slashes[1:] != slashes[:-1] + 1
        run_start = np.maximum.accumulate(np.where(starts, slashes, 0))
        at = np.minimum(np.searchsorted(slashes, quotes - 1), slashes.size - 1)
        after_run = slashes[at] == quotes - 1
        escaped = after_run & ((quotes - run_start[at]) % 2 == 1)
        quotes = quotes[~escaped]
    opening = (codes == _OPEN_SQUARE) | (codes == _OPEN_CURLY)
    brackets = np.flatnonzero(opening | (codes == _CLOSE_SQUARE) | (codes == _CLOSE_CURLY))
    steps = np.where(opening[brackets], 1, -1)
    outside = np.searchsorted(quotes, brackets) % 2 == 0
    return int(np.cumsum(steps[outside]).max(initial=0))


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
    # No deeper than it has opening brackets: most payloads have fewer than the limit, counted at C speed.
    depth = nesting_depth(data) if data.count(b"[") + data.count(b"{") > max_depth else 0
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
