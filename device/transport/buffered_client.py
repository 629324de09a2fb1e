"""A paho client that reads the socket in large chunks and can shed request floods before parsing.

paho reads each packet with three or more `recv()` calls (type byte, length bytes, body). Each call
gives up the GIL, and while the service loop is busy (frames, replies) every re-acquisition waits
up to the interpreter's switch interval: measured here, that capped reading at a few hundred
messages a second, so a burst of requests sat in the broker for a minute and the next real command
with it. This client reads up to 64 KiB per `recv()` and serves paho's small reads from that buffer.

paho then still spends ~100 us parsing each PUBLISH (MQTT 5 properties). A QoS 0 PUBLISH that
`shed(topic)` refuses (the service: a command request while both command queues are full, which
would be counted and dropped anyway) is dropped here from the framed byte stream, before paho
parses it: QoS 0 needs no acknowledgement, so paho's protocol state is unaffected. Everything else
is passed through byte for byte.

It overrides two of paho's private hooks (`_sock_recv`, `_sock_close`) and the public `loop_read`, and
`abandon(mid)` edits paho's session (`_out_messages`, `_inflight_messages`) the way a PUBACK does;
tests/test_buffered_client.py and the service tests fail if a paho release changes them.
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt

READ_SIZE = 64 * 1024
_PUBLISH = 3


MALFORMED = (-1, -1)


def _remaining_length(buf: bytearray, pos: int, n: int) -> tuple[int, int] | None:
    """(remaining length, where the packet body starts) of the packet at `pos`; None if incomplete."""
    length, mult = 0, 1
    for i in range(pos + 1, min(pos + 5, n)):
        byte = buf[i]
        length += (byte & 0x7F) * mult
        if not byte & 0x80:
            return length, i + 1
        mult *= 128
    return MALFORMED if n - pos >= 5 else None


class Framer:
    """Splits the inbound byte stream into whole MQTT packets and drops the QoS 0 PUBLISHes `shed` names."""

    def __init__(self, shed: Callable[[bytes], bool]) -> None:
        self.shed = shed
        self.pending = bytearray()
        self.passthrough = False  # after a malformed length: hand everything to paho, which reports it

    def feed(self, data: bytes) -> bytes:
        if self.passthrough:
            return data
        buf = self.pending
        buf += data
        out = bytearray()
        pos, n = 0, len(buf)
        while True:
            header = _remaining_length(buf, pos, n)
            if header is None:
                break  # fixed header incomplete
            if header == MALFORMED:
                self.passthrough = True
                out += buf[pos:]
                buf.clear()
                return bytes(out)
            length, body = header
            end = body + length
            if end > n:
                break  # body incomplete
            if not self._drop(buf, pos, body, end):
                out += buf[pos:end]
            pos = end
        del buf[:pos]
        return bytes(out)

    def _drop(self, buf: bytearray, start: int, body: int, end: int) -> bool:
        head = buf[start]
        if head >> 4 != _PUBLISH or (head >> 1) & 0x03 != 0 or end - body < 2:
            return False
        size = (buf[body] << 8) | buf[body + 1]
        return body + 2 + size <= end and self.shed(bytes(buf[body + 2 : body + 2 + size]))


class BufferedClient(mqtt.Client):
    def __init__(self, *args, shed: Callable[[bytes], bool] | None = None, **kwargs) -> None:
        self._rbuf = bytearray()
        self._buffer_only = False
        self._shed = shed
        self._framer = Framer(shed) if shed is not None else None
        super().__init__(*args, **kwargs)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            if self._buffer_only:
                raise BlockingIOError  # paho keeps a partial packet and goes back to select()
            data = super()._sock_recv(max(bufsize, READ_SIZE))  # BlockingIOError when nothing is there
            if not data:
                return data  # the broker closed the connection
            if self._framer is not None:
                data = self._framer.feed(data)
                if not data:
                    raise BlockingIOError  # all shed, or only part of a packet so far
            self._rbuf += data
        out = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return out

    def _sock_close(self) -> None:
        # Bytes of a dead connection must never be read as the next one's.
        self._rbuf.clear()
        if self._shed is not None:
            self._framer = Framer(self._shed)
        super()._sock_close()

    def abandon(self, mid: int) -> bool:
        """Forget an unacknowledged QoS 1 message as if its PUBACK had come, without telling on_publish:
        it is not resent after a reconnect and its in-flight slot is free (queued messages move up).
        MQTT forbids resending a packet id on the same connection, so a message whose acknowledgement
        was lost can only be sent again as a new message. False if paho no longer holds `mid`."""
        with self._out_message_mutex:
            message = self._out_messages.pop(mid, None)
            if message is None:
                return False
            if message.qos > 0 and message.state == mqtt.mqtt_ms_wait_for_puback:
                self._inflight_messages -= 1
                if self._max_inflight_messages > 0:
                    self._update_inflight()
        return True

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        # select() sees only the socket: packets already in the buffer are read now, not when more
        # bytes happen to arrive; but without reading the socket again, so paho's writes (replies,
        # events, keepalive) get their turn during a flood.
        rc = super().loop_read(max_packets)
        self._buffer_only = True
        try:
            while rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._rbuf and self._sock is not None:
                rc = super().loop_read(max_packets)
        finally:
            self._buffer_only = False
        return rc
