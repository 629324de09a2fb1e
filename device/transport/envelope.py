"""The self-describing envelope around every payload the terminal publishes.

Every payload carries the schema version, its own id, its type, the terminal, when it was made and
when it expires (and the correlation id of the request it answers). On MQTT 5 the same facts are
mirrored in the message properties (content type, message expiry, correlation data, user properties)
so brokers and bridges can act on them without parsing the body.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"
ENVELOPE_KEYS = ("schema", "id", "type", "terminal_id", "created_at", "expires_at", "correlation_id")


def envelope(
    kind: str,
    terminal_id: str,
    body: dict[str, Any],
    *,
    ttl_s: float | None = None,
    correlation_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A new payload dict: envelope fields first, then `body` (whose keys must not clash with them)."""
    clash = set(body) & set(ENVELOPE_KEYS)
    if clash:
        raise ValueError(f"payload body uses envelope keys: {sorted(clash)}")
    created = time.time() if now is None else now
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": str(uuid.uuid4()),
        "type": kind,
        "terminal_id": terminal_id,
        "created_at": round(created, 3),
        "expires_at": None if ttl_s is None else round(created + ttl_s, 3),
    }
    if correlation_id is not None:
        out["correlation_id"] = correlation_id
    out.update(body)
    return out


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Meta:
    """What the MQTT 5 properties of a message mirror from its payload."""

    kind: str
    payload_id: str
    expires_at: float | None = None
    correlation: bytes | None = None

    @classmethod
    def of(cls, payload: dict[str, Any], correlation: bytes | None = None) -> Meta:
        cid = payload.get("correlation_id")
        if correlation is None and isinstance(cid, str):
            correlation = cid.encode("utf-8")
        return cls(payload["type"], payload["id"], payload.get("expires_at"), correlation)

    def remaining_s(self, now: float | None = None) -> int | None:
        """Seconds left for MQTT message expiry (at least 1 while not expired), None for no expiry."""
        if self.expires_at is None:
            return None
        left = self.expires_at - (time.time() if now is None else now)
        return max(1, int(left)) if left > 0 else 0
