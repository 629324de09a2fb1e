"""A paho client that reads the socket in large chunks.

paho reads each packet with three or more `recv()` calls (type byte, length bytes, body). Each call
gives up the GIL, and while the service loop is busy (frames, replies) every re-acquisition waits
up to the interpreter's switch interval: measured here, that capped reading at a few hundred
messages a second, so a burst of requests sat in the broker for a minute and the next real command
with it. This client reads up to 64 KiB per `recv()` and serves paho's small reads from that buffer,
so a burst is read at Python speed and the bounded command queue (not the broker) decides what waits.

It overrides two of paho's private hooks (`_sock_recv`, `_sock_close`) and the public `loop_read`;
tests/test_control_flood.py fails if a paho release changes them.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt

READ_SIZE = 64 * 1024


class BufferedClient(mqtt.Client):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._rbuf = bytearray()
        self._buffer_only = False
        super().__init__(*args, **kwargs)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            if self._buffer_only:
                raise BlockingIOError  # paho keeps a partial packet and goes back to select()
            data = super()._sock_recv(max(bufsize, READ_SIZE))  # BlockingIOError when nothing is there
            if not data:
                return data  # the broker closed the connection
            self._rbuf += data
        out = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return out

    def _sock_close(self) -> None:
        self._rbuf.clear()  # bytes of a dead connection must never be read as the next one's
        super()._sock_close()

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
