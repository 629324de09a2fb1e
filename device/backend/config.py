"""The backend's typed config (`[backend.*]` sections of its own TOML file): unknown keys are errors.

Precedence: the file, then the command-line flags. Secrets (the HTTP token, the MQTT password, the
backend's private key) are read from files when the service starts, never from the config itself.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from device.config import ConfigError, deep_merge, read_toml
from device.config.base import Section
from device.transport.client import BrokerUrl, parse_broker_url
from device.wire.bounded import DEFAULT_MAX_DEPTH


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`); ValueError saying how to write it."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8080)")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MqttSection(Section):
    broker: str | None = Field(None, description="mqtt://host:port or mqtts://host:port (required to run).")
    topic_prefix: str = Field(
        "faceonly", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Root of every topic."
    )
    group: str = Field(
        "faceonly-backend",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Shared-subscription group: instances in one group split the terminals' messages.",
    )
    client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT client id; default: one made once and kept in the state dir (a stable session).",
    )
    username: str | None = Field(None, max_length=256, description="MQTT user name.")
    password_file: Path | None = Field(None, description="File holding the MQTT password.")
    tls_ca: Path | None = Field(None, description="CA certificate (PEM) of the broker.")
    tls_cert: Path | None = Field(None, description="Client certificate (PEM).")
    tls_key: Path | None = Field(None, description="Key of the client certificate (PEM).")
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=0xFFFFFFFE,
        description="The broker queues events for this instance this long while it is away.",
    )
    receive_maximum: int = Field(
        500,
        ge=1,
        le=65535,
        description="Unacknowledged events in flight to this instance (bounds its queue; acked after commit).",
    )

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_broker_url(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def address(self) -> BrokerUrl:
        if self.broker is None:
            raise ValueError("no broker: give --broker or [mqtt] broker")
        return parse_broker_url(self.broker)


class HttpSection(Section):
    listen: str = Field(
        "127.0.0.1:8080", description="HOST:PORT of the page; anything but loopback needs token_file."
    )
    token_file: Path | None = Field(
        None, description="File holding the access token (required when not bound to loopback)."
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpSection:
        host, _ = parse_listen(self.listen)
        if not is_loopback(host) and self.token_file is None:
            raise ValueError(f"listen {self.listen}: a page bound beyond loopback needs token_file")
        return self


class StoreSection(Section):
    db: str | None = Field(
        None,
        description="SQLite file path or postgresql:// URL; default: backend.sqlite in the state dir.",
    )


class RetentionSection(Section):
    thumbnails: Literal["live_view"] = Field(
        "live_view",
        description="Thumbnails are kept in memory for the live view only, never written to the store.",
    )
    live_view_events: int = Field(
        200, ge=1, le=10_000, description="Most recent events (raw bytes, thumbnail) kept in memory."
    )
    attendance_days: int | None = Field(
        None, ge=1, le=36_500, description="Attendance records older than this are deleted; none: kept."
    )


class IdentitySection(Section):
    private_key_file: Path | None = Field(
        None, description="The backend's X25519 private key (base64), to open sealed payloads."
    )
    gallery_key_file: Path | None = Field(
        None, description="The gallery signing key (`faceonly gallery keygen`); needed to enrol."
    )
    command_key_file: Path | None = Field(
        None, description="The command key (`faceonly keys generate`) that signs enroll and gallery commands."
    )
    models_dir: Path | None = Field(None, description="Models (threshold curve, builder); default: bundled.")
    false_accept_per_search: float = Field(
        1e-3, gt=0, lt=1, description="Central 1:N matching: false-accept target per search."
    )


class IngestSection(Section):
    max_payload_bytes: int = Field(
        1024 * 1024,
        ge=4096,
        le=256 * 1024 * 1024,
        description="Larger messages are quarantined (payload.too_large) unparsed; only this many bytes of one "
        "are ever held in the queue.",
    )
    max_depth: int = Field(
        DEFAULT_MAX_DEPTH, ge=8, le=256, description="Deeper JSON is quarantined (payload.too_deep) unparsed."
    )
    max_clock_skew_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Status and health dated further ahead of the backend's clock are quarantined (future); "
        "health is expired only this long after its expires_at.",
    )


class BackendConfig(Section):
    state_dir: Path = Field(Path("var/backend"), description="The backend's own directory (database, ids).")
    mqtt: MqttSection = MqttSection()
    http: HttpSection = HttpSection()
    store: StoreSection = StoreSection()
    retention: RetentionSection = RetentionSection()
    identity: IdentitySection = IdentitySection()
    ingest: IngestSection = IngestSection()

    @property
    def db(self) -> str:
        return self.store.db or str(self.state_dir / "backend.sqlite")


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        out.append(f"{key}: {msg}")
    return out


def load_backend_config(path: Path | None, overrides: dict[str, Any] | None = None) -> BackendConfig:
    """The file's config with `overrides` (flags) applied; ConfigError names every offending key."""
    try:
        return BackendConfig.model_validate(deep_merge(read_toml(path), overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
