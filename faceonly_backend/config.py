"""The backend's typed config (the sections of its own TOML file): unknown keys are errors.

Precedence: the file, then the command-line flags. Secrets (the MQTT password, the backend's private key,
the signing keys) are read from files when the service starts, never from the config itself.
"""

from __future__ import annotations

import ipaddress
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from device.config import ConfigError, deep_merge, read_toml
from device.config.base import Section
from device.config.mqtt import MqttConnection
from device.wire.bounded import DEFAULT_MAX_DEPTH
from faceonly_backend.natsconfig import NatsSection


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


class MqttSection(MqttConnection):
    """The backend's `[mqtt]`: the shared connection model, plus its shared-subscription group and session."""

    group: str = Field(
        "faceonly-backend",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Shared-subscription group: instances in one group split the terminals' messages.",
    )
    client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",  # no '.': NATS refuses it in client ids
        description="MQTT client id; default: one made once and kept in the state dir (a stable session).",
    )
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


class HttpSection(Section):
    listen: str = Field(
        "127.0.0.1:8080",
        description="HOST:PORT of the page. Beyond loopback, put it behind TLS (session cookies are then Secure).",
    )
    auth: Literal["accounts", "open"] = Field(
        "accounts",
        description="accounts: staff log in (roles admin, hr, viewer) and integrations use API tokens; open: a "
        "lab on loopback only, where every request acts as the admin 'lab' (`faceonly run`'s demo).",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="A staff session lasts this long.")

    @model_validator(mode="before")
    @classmethod
    def _no_shared_token(cls, data: Any) -> Any:
        if isinstance(data, dict) and "token_file" in data:
            raise ValueError(
                "token_file: the shared page token is replaced by staff accounts and one API token per "
                "integration (faceonly backend users add / tokens add)"
            )
        return data

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _open_on_loopback_only(self) -> HttpSection:
        host, _ = parse_listen(self.listen)
        if self.auth == "open" and not is_loopback(host):
            raise ValueError(f'listen {self.listen}: auth = "open" (a lab) is for loopback only')
        return self

    @property
    def secure_cookies(self) -> bool:
        """Beyond loopback the page is reached through TLS, so its cookies are never sent in the clear."""
        return not is_loopback(parse_listen(self.listen)[0])


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
    templates_after_last_seen_days: int | None = Field(
        None,
        ge=1,
        le=36_500,
        description="A subject's templates are purged everywhere this many days after it was last seen (or "
        "enrolled); default by site profile: gdpr 365, bipa 1095 (BIPA's 3 years is the most it allows), none: kept.",
    )
    attendance_on_erase: Literal["anonymise", "keep"] = Field(
        "anonymise",
        description="When a person is erased: their attendance records are kept without the link to them "
        "(anonymise) or kept as they are (keep). Deactivating keeps them as they are.",
    )
    check_interval_s: float = Field(
        60.0, ge=0.5, le=86_400, description="How often the retention timers are checked."
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


PROFILE_TEMPLATE_DAYS: dict[str, int | None] = {"gdpr": 365, "bipa": 1095, "none": None}
BIPA_MAX_DAYS = 1095  # 740 ILCS 14/15(a): at the latest 3 years after the individual's last interaction


class SiteSection(Section):
    name: str = Field("faceonly site", min_length=1, max_length=128, description="Shown on the page.")
    profile: Literal["gdpr", "bipa", "none"] = Field(
        "gdpr",
        description="gdpr / bipa: a consent record is required before any template is made, and templates "
        "are purged by the retention timers; none: a lab (no consent asked, templates kept).",
    )
    time_zone: str = Field("UTC", description="IANA time zone of the site: attendance days and times shown.")
    consent_text_file: Path | None = Field(
        None,
        description="The consent text people are asked to agree to (UTF-8); required to enrol under gdpr/bipa.",
    )
    consent_version: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="The version of that text (a new text, a new version).",
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (for example Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _consent_pair(self) -> SiteSection:
        if (self.consent_text_file is None) != (self.consent_version is None):
            raise ValueError("consent_text_file and consent_version go together")
        return self

    @property
    def consent_required(self) -> bool:
        return self.profile != "none"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class EnrolmentSection(Section):
    duplicate_far: float = Field(
        1e-4,
        gt=0,
        lt=1,
        description="A new template scoring above another subject's 1:1 threshold at this false-accept rate "
        "per comparison is refused as that subject (an admin may override, audited).",
    )
    same_person_far: float = Field(
        1e-2,
        gt=0,
        lt=1,
        description="One subject's photos must all link as one person at this 1:1 false-accept rate, else "
        "they are refused as several people.",
    )
    confusion_report_after: int = Field(
        2, ge=1, le=1000, description="Corrections between the same two subjects reported from this count."
    )


class AttendanceSection(Section):
    doors: dict[str, Literal["in", "out", "both"]] = Field(
        {},
        description="Terminal id -> the direction its passes count as; unlisted terminals are 'both' (passes "
        "alternate in, out, in...).",
    )
    debounce_s: float = Field(
        60.0, ge=0, le=3600, description="Passes at one door closer together than this count once."
    )


class BackendConfig(Section):
    state_dir: Path = Field(Path("var/backend"), description="The backend's own directory (database, ids).")
    mqtt: MqttSection = MqttSection()
    http: HttpSection = HttpSection()
    store: StoreSection = StoreSection()
    retention: RetentionSection = RetentionSection()
    identity: IdentitySection = IdentitySection()
    ingest: IngestSection = IngestSection()
    site: SiteSection = SiteSection()
    enrolment: EnrolmentSection = EnrolmentSection()
    attendance: AttendanceSection = AttendanceSection()
    nats: NatsSection = NatsSection()

    @model_validator(mode="after")
    def _bipa_limit(self) -> BackendConfig:
        days = self.retention.templates_after_last_seen_days
        if self.site.profile == "bipa" and days is not None and days > BIPA_MAX_DAYS:
            raise ValueError(
                f"retention.templates_after_last_seen_days {days}: the bipa profile allows at most "
                f"{BIPA_MAX_DAYS} (3 years after the last interaction)"
            )
        return self

    @model_validator(mode="after")
    def _nats_needs_mqtt_311(self) -> BackendConfig:
        if self.nats.servers and self.mqtt.protocol != "3.1.1":
            raise ValueError(
                'mqtt.protocol: a NATS cluster speaks MQTT 3.1.1: set protocol = "3.1.1" with [nats]'
            )
        return self

    @property
    def template_days(self) -> int | None:
        """Days after the last contact when a subject's templates are purged (None: kept)."""
        days = self.retention.templates_after_last_seen_days
        return days if days is not None else PROFILE_TEMPLATE_DAYS[self.site.profile]

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
