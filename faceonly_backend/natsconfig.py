"""The backend's [nats] section: where it reads a NATS cluster's durable stream (faceonly_backend/jetstream.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from device.config.base import Section


class NatsSection(Section):
    """The engine's durable stream: on a NATS cluster, events and statuses are read from the MQTT layer's
    JetStream stream by one durable pull consumer that every instance shares (faceonly_backend/jetstream.py)."""

    servers: list[str] = Field(
        [],
        description="nats://host:port of the cluster's nodes; empty: ingest through the MQTT shared subscription.",
    )
    consumer: str = Field(
        "faceonly-backend",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer name; every instance of one backend uses the same (they share its messages).",
    )
    username: str | None = Field(None, max_length=256, description="NATS user name.")
    password_file: Path | None = Field(None, description="File holding the NATS password.")
    tls_ca: Path | None = Field(None, description="CA certificate (PEM) of the NATS servers (tls:// URLs).")
    max_ack_pending: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Messages delivered to all instances and not yet acknowledged (each is acked after its commit).",
    )
    ack_wait_s: float = Field(
        30.0, ge=1, le=3600, description="An unacknowledged message is delivered again after this."
    )
    fetch_batch: int = Field(500, ge=1, le=10_000, description="Messages asked for per pull.")
    start_timeout_s: float = Field(
        30.0,
        ge=1,
        le=600,
        description="How long start-up waits for the cluster and the MQTT layer's stream before refusing to run.",
    )

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("nats://", "tls://")):
                raise ValueError(f"{url!r}: write nats://host:port (or tls://host:port)")
        return value
