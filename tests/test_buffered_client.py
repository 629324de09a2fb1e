"""The inbound framer: whole MQTT packets through, byte for byte, in any chunking; only shed QoS 0
PUBLISHes dropped; a malformed length handed to paho as it is."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from device.transport.buffered_client import Framer
from tests.mqtt_frames import varint


def _publish(topic: bytes, payload: bytes, qos: int) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (b"\x00\x01" if qos else b"") + b"\x00" + payload
    return bytes([0x30 | qos << 1]) + varint(len(body)) + body


_packets = st.one_of(
    st.builds(
        _publish,
        st.sampled_from([b"req/a", b"req/b/c", b"other/x", b"re", b""]),
        st.binary(max_size=300) | st.just(b"x" * 20_000),
        st.sampled_from([0, 1]),
    ),
    st.tuples(st.sampled_from([0x20, 0x40, 0x90, 0xD0]), st.binary(max_size=200)).map(
        lambda t: bytes([t[0]]) + varint(len(t[1])) + t[1]
    ),
)


def _shed(topic: bytes) -> bool:
    return topic.startswith(b"req/")


def _kept(packet: bytes) -> bool:
    if packet[0] != 0x30:
        return True
    i = 1
    while packet[i] & 0x80:
        i += 1
    body = packet[i + 1 :]
    size = struct.unpack(">H", body[:2])[0]
    return not _shed(body[2 : 2 + size])


@settings(max_examples=300, deadline=None)
@given(packets=st.lists(_packets, max_size=30), cuts=st.lists(st.integers(0, 50_000), max_size=20))
def test_any_chunking_passes_whole_packets_and_sheds_only_qos0_requests(packets, cuts) -> None:
    stream = b"".join(packets)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    framer = Framer(_shed)
    out = b"".join(framer.feed(stream[a:b]) for a, b in itertools.pairwise(points))
    assert out == b"".join(p for p in packets if _kept(p))
    assert not framer.pending


def test_a_malformed_length_is_passed_through_for_paho_to_report() -> None:
    framer = Framer(_shed)
    bad = b"\x30\xff\xff\xff\xff\x7f" + b"rest"
    assert framer.feed(bad[:3]) == b""
    assert framer.feed(bad[3:]) == bad
    assert framer.feed(b"more") == b"more"
