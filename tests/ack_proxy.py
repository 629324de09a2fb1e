"""A TCP proxy between an MQTT client and a real broker that loses the broker's PUBACKs on demand.

Everything is passed through byte for byte, except that the broker -> client stream is split into MQTT
packets and a PUBACK is dropped while `drop(n)` says so (`n` counts the PUBACKs seen so far, from 0).
The broker has the message and acknowledged it; the client never hears of it: a lost acknowledgement.

    with AckDroppingProxy(broker.host, broker.port, drop=lambda n: n < 60) as proxy:
        proxy.url        # mqtt://127.0.0.1:PORT for the client
        proxy.dropped    # PUBACKs lost so far
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

PUBACK = 4


def _packet_end(buf: bytearray) -> int | None:
    """Where the first whole packet in `buf` ends, or None if it is not complete yet."""
    length, mult = 0, 1
    for i in range(1, min(5, len(buf))):
        byte = buf[i]
        length += (byte & 0x7F) * mult
        if not byte & 0x80:
            end = i + 1 + length
            return end if end <= len(buf) else None
        mult *= 128
    return None


class AckDroppingProxy:
    def __init__(self, host: str, port: int, drop: Callable[[int], bool]) -> None:
        self.target = (host, port)
        self.drop = drop
        self.acks_seen = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port = self._server.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> AckDroppingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        for s in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._from_broker, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def _from_broker(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                buf += data
                out = bytearray()
                while (end := _packet_end(buf)) is not None:
                    if not self._lose(buf[0] >> 4):
                        out += buf[:end]
                    del buf[:end]
                if out:
                    dst.sendall(out)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def _lose(self, packet_type: int) -> bool:
        if packet_type != PUBACK:
            return False
        with self._lock:
            n = self.acks_seen
            self.acks_seen += 1
            if self.drop(n):
                self.dropped += 1
                return True
        return False
