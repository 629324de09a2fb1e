"""The bounded JSON reader every consumer of the wire uses: size and depth before parsing, one error type."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.wire.bounded import PAYLOAD_CODES, PayloadError, loads_bounded, nesting_depth

# Text full of what a depth count could stumble on: brackets, quotes and backslashes (escaped by json.dumps).
tricky_text = st.text(alphabet='[]{}"\\ax\u00e9', max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | tricky_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | tricky_text, inner, max_size=4)
    ),
    max_leaves=30,
)


def python_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((python_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((python_depth(v) for v in value.values()), default=0)
    return 0


@given(json_values)
def test_depth_and_value_agree_with_the_parser(value):
    raw = json.dumps(value).encode()
    assert nesting_depth(raw) == python_depth(value)
    assert loads_bounded(raw, max_bytes=len(raw), max_depth=python_depth(value)) == value


def test_brackets_inside_strings_do_not_count():
    assert nesting_depth(b'{"a": "[[[[{{{{\\"[[["}') == 1
    assert nesting_depth(b'["\\\\", [["\\\\\\"]"]]]') == 3  # an even run of backslashes ends the string
    assert nesting_depth(b'"[[[') == 0  # an unterminated string runs to the end, as the parser reads it
    assert nesting_depth(b"") == 0


def test_a_string_heavy_payload_costs_little():
    """No regex or Python loop per character: a 1 MB event of base64 is counted in a few milliseconds."""
    import time

    raw = json.dumps({"thumbnail": "QUJD" * 250_000, "box": [[1, 2]]}).encode()
    start = time.perf_counter()
    assert nesting_depth(raw) == 3
    print(f"depth of a {len(raw)} byte payload: {(time.perf_counter() - start) * 1000:.1f} ms")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 100_000, "payload.too_deep"),
        (b'{"event": ' + b"[" * 600 + b"]" * 600 + b"}", "payload.too_deep"),
        (b"\xff\xfe{}", "payload.not_utf8"),
        (b'{"a": NaN}', "payload.not_json"),
        (b'{"a": Infinity}', "payload.not_json"),
        (b'{"a": -1e400}', "payload.not_json"),
        (b"{", "payload.not_json"),
        (b"x" * 20_000_001, "payload.too_large"),
        (b'"' + b"\\" * 1000, "payload.not_json"),
    ],
    ids=[
        "100k-deep",
        "600-deep-in-event",
        "not-utf8",
        "nan",
        "infinity",
        "beyond-double",
        "truncated",
        "20MB",
        "open-string",
    ],
)
def test_hostile_payloads_are_one_error_with_a_code(raw, code):
    with pytest.raises(PayloadError) as err:
        loads_bounded(raw, max_bytes=20_000_000)
    assert err.value.code == code and code in PAYLOAD_CODES
    assert len(str(err.value)) < 200  # the message never repeats the payload


@given(st.binary(max_size=300))
def test_any_bytes_give_a_value_or_a_payload_error(raw):
    try:
        loads_bounded(raw, max_bytes=200, max_depth=4)
    except PayloadError as exc:
        assert exc.code in PAYLOAD_CODES


@pytest.mark.parametrize("limit", [0, 1, 2, 3])
def test_the_limit_holds_exactly_whether_or_not_the_brackets_are_counted(limit):
    """Few brackets skip the count (it cannot exceed them); the verdict is the same either way."""
    for raw in (b"[[1]]", b'[{"a": [2]}]', b'["[[[[", {"b": "{{{"}]'):
        depth = nesting_depth(raw)
        if depth > limit:
            with pytest.raises(PayloadError):
                loads_bounded(raw, 100, max_depth=limit)
        else:
            loads_bounded(raw, 100, max_depth=limit)
