"""The badge reader: key events as the kernel gives them (struct input_event, evdev's key codes) become one
code per Enter, typed at a reader's pace; the stand-in reads the same records from a FIFO. python-evdev's own
test double (UInput) needs /dev/uinput, which this machine's kernel does not offer; where it does, the
EvdevReader test below runs the real device path."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.access.badge import EVENT, MAX_CODE, FifoReader, KeyDecoder, build_reader

ecodes = pytest.importorskip("evdev.ecodes", reason="python-evdev (the access extra) is not installed")
EV_SYN, EV_KEY = 0, 1


def typed(text: str, start: float = 100.0, gap: float = 0.004) -> list[tuple[float, int, int, int]]:
    """What a HID reader sends for `text` then Enter: key down, key up and a SYN report per key."""
    events, t = [], start
    for char in text:
        code = ecodes.ecodes[f"KEY_{char.upper()}"]
        events += [(t, EV_KEY, code, 1), (t, EV_KEY, code, 0), (t, EV_SYN, 0, 0)]
        t += gap
    events += [(t, EV_KEY, ecodes.KEY_ENTER, 1), (t, EV_KEY, ecodes.KEY_ENTER, 0), (t, EV_SYN, 0, 0)]
    return events


def decode(events) -> list[str]:
    decoder = KeyDecoder()
    return [code for e in events if (code := decoder.feed(*e)) is not None]


def test_a_reader_burst_is_one_code_per_enter() -> None:
    assert decode(typed("0012345678") + typed("77", start=101.0)) == ["0012345678", "77"]
    assert decode(typed("ab12")) == ["AB12"]
    keypad = [
        (1.0, EV_KEY, ecodes.KEY_KP4, 1),
        (1.0, EV_KEY, ecodes.KEY_KP2, 1),
        (1.0, EV_KEY, ecodes.KEY_KPENTER, 1),
    ]
    assert decode(keypad) == ["42"]


def test_slow_typing_and_overlong_input_make_no_code() -> None:
    assert decode(typed("1234", gap=0.8)) == []  # each pause starts over: a person at a keyboard
    decoder = KeyDecoder()
    codes = [c for e in typed("1" * (MAX_CODE + 1)) if (c := decoder.feed(*e)) is not None]
    assert codes == [] and decoder.too_long == 1
    assert decode([(1.0, EV_KEY, ecodes.KEY_ENTER, 1)]) == []  # Enter alone


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1e6, allow_nan=False),
            st.integers(0, 5),
            st.integers(0, 767),
            st.integers(-1, 2),
        ),
        max_size=80,
    )
)
def test_any_event_stream_gives_short_codes_of_letters_and_digits(events) -> None:
    for code in decode(sorted(events)):
        assert 0 < len(code) <= MAX_CODE and code.isalnum() and code == code.upper()


def test_the_stand_in_reads_input_event_records_from_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "badge.fifo"
    reader = build_reader(f"stand-in:{fifo}")
    assert isinstance(reader, FifoReader) and fifo.exists()
    codes: queue.Queue[str] = queue.Queue()
    reader.start(codes.put)
    try:
        fd = os.open(fifo, os.O_WRONLY)
        records = b"".join(EVENT.pack(int(t), int((t % 1) * 1e6), *rest) for t, *rest in typed("0012345678"))
        os.write(fd, records[:37])  # a record split across writes is reassembled
        time.sleep(0.05)
        os.write(fd, records[37:])
        os.write(fd, b"".join(EVENT.pack(200, 0, *rest) for _, *rest in typed("77")))
        os.close(fd)
        assert codes.get(timeout=5) == "0012345678"
        assert codes.get(timeout=5) == "77"
    finally:
        reader.stop()
    assert reader.stats()["codes"] == 2
    assert build_reader("none") is None


def test_the_evdev_reader_on_a_uinput_device() -> None:
    if not os.path.exists("/dev/uinput"):
        pytest.skip("no /dev/uinput on this kernel: python-evdev's UInput cannot make a test device here")
    from evdev import UInput

    with UInput({EV_KEY: [ecodes.ecodes[f"KEY_{c}"] for c in "0123456789"] + [ecodes.KEY_ENTER]}) as device:
        time.sleep(0.2)
        reader = build_reader(f"evdev:{device.device.path}")
        codes: queue.Queue[str] = queue.Queue()
        assert reader is not None
        reader.start(codes.put)
        try:
            for _, type_, code, value in typed("4711"):
                device.write(type_, code, value)
            device.syn()
            assert codes.get(timeout=5) == "4711"
        finally:
            reader.stop()
