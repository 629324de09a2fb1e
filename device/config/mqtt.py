"""MQTT connection (shared by the terminal and the backend) and the terminal's durable outbox settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from device.config.base import LIVE_FROM_FILE, Section
from device.transport.client import BrokerUrl, ClientOptions, parse_broker_url

# systemd LoadCredential= puts secrets here; a password can be read from it without touching the config file.
CREDENTIAL_NAME = "mqtt_password"


class MqttConnection(Section):
    """How a client reaches the broker, one model for the terminal's `[mqtt]` and the backend's: the broker
    (one URL or a cluster's nodes), protocol, topic root, subscription QoS, credentials and TLS. Each side
    adds its own settings; both build their paho clients from `client_options()`."""

    # Without a broker: the terminal talks to the embedded demo broker on loopback; a backend must be told.
    default_broker: ClassVar[str | None] = None

    broker: str | list[str] | None = Field(
        None,
        title="Broker URL or a cluster's URLs",
        description="mqtt://host:port or mqtts://host:port, or a list of a cluster's nodes (tried in turn, with "
        "backoff and jitter). A terminal without one uses the embedded demo broker; a backend needs one.",
    )
    topic_prefix: str = Field(
        "faceonly",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Root of every topic; the API version follows it.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT protocol version: 5, or 3.1.1 on a NATS cluster (docs/fleet.md)."
    )
    subscription_qos: Literal[0, 1] = Field(
        1,
        description="QoS of this client's subscriptions (a terminal's commands, desired config and own status; "
        "a backend's command replies). 1: the broker queues them while the client is away. 0 on a NATS "
        "cluster: there each QoS 1 subscription of a persistent session is a replicated JetStream consumer "
        "(see docs/fleet.md).",
    )
    username: str | None = Field(None, max_length=256, description="MQTT user name (default: none).")
    password_file: Path | None = Field(
        None,
        description=f"File holding the password; default: $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} if present.",
    )
    tls_ca: Path | None = Field(
        None, description="CA certificate (PEM) that signed the broker's certificate."
    )
    tls_cert: Path | None = Field(None, description="This client's certificate (PEM).")
    tls_key: Path | None = Field(None, description="Key of the client certificate (PEM).")

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list of brokers: give at least one URL")
            urls = [parse_broker_url(v) for v in value]
            if len({u.tls for u in urls}) > 1:
                raise ValueError("the nodes of one cluster are all mqtt:// or all mqtts://")
            if len(set(urls)) != len(urls):
                raise ValueError("a broker URL is listed twice")
        elif value is not None:
            parse_broker_url(value)  # the one parser: a URL without a scheme is refused, never guessed
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def brokers(self) -> list[BrokerUrl]:
        """Every configured broker (one, or a cluster's nodes); ValueError without one and no default."""
        urls = self.broker if isinstance(self.broker, list) else [self.broker or self.default_broker]
        if urls == [None]:
            raise ValueError("no broker: give --broker or [mqtt] broker")
        return [parse_broker_url(u) for u in urls if u is not None]

    @property
    def address(self) -> BrokerUrl:
        return self.brokers[0]

    def read_password(self) -> str | None:
        """The password from password_file or the systemd credential; read when connecting."""
        path = self.password_file
        if path is None and os.environ.get("CREDENTIALS_DIRECTORY"):
            candidate = Path(os.environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
            path = candidate if candidate.is_file() else None
        if path is None:
            return None
        return path.read_text(encoding="utf-8").rstrip("\r\n")

    def client_options(self) -> list[ClientOptions]:
        """One ClientOptions per broker; the password is read now (MQTT sends one only with a user name)."""
        password = self.read_password() if self.username is not None else None
        return [
            ClientOptions(
                url, self.protocol, self.username, password, self.tls_ca, self.tls_cert, self.tls_key
            )
            for url in self.brokers
        ]


class MqttConfig(MqttConnection):
    """The terminal's `[mqtt]`: the connection, its session and will, and the outbox's flow to the broker."""

    default_broker: ClassVar[str | None] = "mqtt://127.0.0.1"

    password: str | None = Field(
        None, max_length=1024, repr=False, description="MQTT password (secret; redacted when reported)."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive.")
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        le=0xFFFFFFFE,
        description="Broker keeps our session (subscriptions, queued commands) this long while offline.",
    )
    will_delay_s: int = Field(
        5, ge=0, le=3600, description="Last Will delay (MQTT 5): short blips stay online."
    )
    event_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=10,
        le=0xFFFFFFFE,
        description="Face events expire (MQTT message expiry) after this.",
    )
    max_command_bytes: int = Field(
        64 * 1024, ge=256, le=16 * 1024 * 1024, description="Larger command requests are refused."
    )
    inflight_window: int = Field(
        50, ge=1, le=1000, description="Outbox events handed to the broker connection at once."
    )
    ack_timeout_s: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="An outbox event not acknowledged this long after it was sent (on a live connection) "
        "is sent again as a new message: a lost PUBACK never holds a slot of the window for good.",
    )
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Longest reconnect delay.")

    @model_validator(mode="after")
    def _terminal_pairs(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    def read_password(self) -> str | None:
        """The password: inline, from password_file, or from the systemd credential. Read when connecting."""
        return self.password if self.password is not None else super().read_password()


class OutboxConfig(Section):
    max_events: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Most events kept while the broker is unreachable.",
        json_schema_extra=LIVE_FROM_FILE,
    )
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Most bytes kept on disk.", json_schema_extra=LIVE_FROM_FILE
    )
    max_age_s: float = Field(
        7 * 24 * 3600,
        gt=0,
        description="Queued events older than this expire.",
        json_schema_extra=LIVE_FROM_FILE,
    )
    reserve_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description="Free space the outbox leaves on the state filesystem; the oldest events expire first.",
        json_schema_extra=LIVE_FROM_FILE,
    )
    max_held_events: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Events held in memory while the state filesystem cannot store them (full, read-only).",
        json_schema_extra=LIVE_FROM_FILE,
    )
