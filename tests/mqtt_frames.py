"""Raw MQTT framing for tests that write packets to a socket themselves."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """MQTT's variable-length integer (the remaining-length field)."""
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
