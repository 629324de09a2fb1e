"""The door policy: doors and their modes, schedules, groups, people and their credentials, pass keys.

It is the body of a signed update (device/access/document.py), JSON, read with the bounded reader and checked
here field by field and across fields, so that a policy the terminal installs can be acted on without a
second look: every door a group names exists, every schedule exists, every person's groups exist, numbers and
badges name one person each, and (invariant 6) no door leaves the face as the only way in: a door whose mode
needs the face (`face`, `credential+face`) names an `alternative_door` whose mode takes a credential alone.

Credentials are never in the clear: a PIN is an argon2id hash of a keyed hash (device/access/credentials.py),
a badge a keyed hash, a member QR code the id of a token the backend signed (device/access/passes.py).
"""

from __future__ import annotations

import base64
import binascii
import zoneinfo
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from device.wire.base import Wire

Mode = Literal["face", "credential+face", "credential", "face|credential"]
MODES: tuple[Mode, ...] = ("face", "credential+face", "credential", "face|credential")
CredentialKind = Literal["pin", "badge", "qr"]
Direction = Literal["in", "out", "both"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = "always"  # the schedule every group may name: open at every hour of every day, holidays included

NEEDS_FACE: frozenset[str] = frozenset({"face", "credential+face"})
CREDENTIAL_ALONE: frozenset[str] = frozenset({"credential", "face|credential"})

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
SubjectId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")]
Clock = Annotated[str, StringConstraints(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
Number = Annotated[str, StringConstraints(pattern=r"^\d{1,12}$")]
PinHash = Annotated[
    str,
    StringConstraints(
        pattern=r"^\$argon2id\$v=19\$m=\d{1,7},t=\d{1,2},p=\d{1,2}\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{16,128}$"
    ),
]
BadgeHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
TokenId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]

MAX_DOORS = 256
MAX_SCHEDULES = 256
MAX_GROUPS = 1024
MAX_PEOPLE = 200_000
MAX_HOLIDAYS = 1100


def minutes(clock: str) -> int:
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


class Hours(Wire):
    """[start, end) in the site's local time; an end at or before the start runs past midnight."""

    start: Clock
    end: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> Hours:
        if self.start == "24:00":
            raise ValueError("a window starts at 23:59 at the latest")
        if minutes(self.start) == minutes(self.end):
            raise ValueError("a window needs a start and an end that differ (00:00-24:00 is the whole day)")
        return self


class Window(Hours):
    """On these weekdays, from start to end (local time)."""

    days: list[Day] = Field(min_length=1, max_length=7)

    @field_validator("days")
    @classmethod
    def _unique(cls, days: list[Day]) -> list[Day]:
        if len(set(days)) != len(days):
            raise ValueError("each day once")
        return days


class Schedule(Wire):
    """A time zone in the access-control sense: weekly windows, and what holds on the site's holidays."""

    windows: list[Window] = Field(default_factory=list, max_length=64)
    on_holidays: list[Hours] = Field(
        default_factory=list, max_length=16, description="hours open on a holiday; none: closed all day"
    )


def _all_credentials() -> list[CredentialKind]:
    return ["pin", "badge", "qr"]


class Door(Wire):
    mode: Mode
    direction: Direction = "both"
    label: str = Field("", max_length=60, description="how the screen names the door (the site's language)")
    credentials: list[CredentialKind] = Field(
        default_factory=_all_credentials, max_length=3, description="what this door takes"
    )
    alternative_door: Id | None = Field(
        None, description="where someone who cannot or will not use the face goes instead (modes needing it)"
    )
    anti_passback_s: int = Field(
        0, ge=0, le=7 * 86_400, description="a second entry without an exit within this is refused (0: off)"
    )
    claim_window_s: float = Field(
        20.0, ge=3.0, le=120.0, description="credential+face: how long a claim waits for its live face"
    )
    attendance_outside_schedule: bool = Field(
        False, description="a passage refused only for its schedule still counts as attendance"
    )

    @field_validator("credentials")
    @classmethod
    def _unique(cls, kinds: list[CredentialKind]) -> list[CredentialKind]:
        if len(set(kinds)) != len(kinds):
            raise ValueError("each credential kind once")
        return kinds


class Group(Wire):
    doors: dict[Id, Id] = Field(
        default_factory=dict, max_length=MAX_DOORS, description="door -> the schedule it may be passed in"
    )


class Person(Wire):
    groups: list[Id] = Field(default_factory=list, max_length=32)
    number: Number | None = Field(None, description="what the person types on the keypad before the PIN")
    pin: PinHash | None = None
    badges: list[BadgeHash] = Field(default_factory=list, max_length=8)
    qr: list[TokenId] = Field(default_factory=list, max_length=8, description="member QR tokens they hold")

    @model_validator(mode="after")
    def _pin_needs_number(self) -> Person:
        if (self.pin is None) != (self.number is None):
            raise ValueError("a PIN and a keypad number go together")
        return self


class Site(Wire):
    timezone: str = Field(max_length=64, description="IANA time zone the schedules are in (zoneinfo)")
    holidays: list[date] = Field(default_factory=list, max_length=MAX_HOLIDAYS)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value[:64]!r}") from None
        return value


def _pass_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a pass key is a base64 Ed25519 public key") from None
    if len(raw) != 32:
        raise ValueError("a pass key is 32 bytes")
    return value


PassKey = Annotated[str, StringConstraints(max_length=64)]


class AccessPolicy(Wire):
    schema_: Literal[1] = Field(alias="schema")
    site: Site
    doors: dict[Id, Door] = Field(min_length=1, max_length=MAX_DOORS)
    schedules: dict[Id, Schedule] = Field(default_factory=dict, max_length=MAX_SCHEDULES)
    groups: dict[Id, Group] = Field(default_factory=dict, max_length=MAX_GROUPS)
    people: dict[SubjectId, Person] = Field(default_factory=dict, max_length=MAX_PEOPLE)
    pass_keys: list[PassKey] = Field(
        default_factory=list,
        max_length=8,
        description="keys that sign QR codes (visitor passes, member codes)",
    )

    @field_validator("pass_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        return [_pass_key(k) for k in keys]

    @model_validator(mode="after")
    def _consistent(self) -> AccessPolicy:
        for name, door in self.doors.items():
            _check_door(name, door, self.doors)
        if ALWAYS in self.schedules:
            raise ValueError(f"schedules: {ALWAYS!r} is built in")
        for name, group in self.groups.items():
            for door_id, schedule in group.doors.items():
                if door_id not in self.doors:
                    raise ValueError(f"groups.{name}: no door {door_id!r}")
                if schedule != ALWAYS and schedule not in self.schedules:
                    raise ValueError(f"groups.{name}.doors.{door_id}: no schedule {schedule!r}")
        numbers: dict[str, str] = {}
        badges: dict[str, str] = {}
        for subject, person in self.people.items():
            for group_id in person.groups:
                if group_id not in self.groups:
                    raise ValueError(f"people.{subject}: no group {group_id!r}")
            if person.number is not None:
                _once(numbers, person.number, subject, "keypad number")
            for badge in person.badges:
                _once(badges, badge, subject, "badge")
        return self


def _check_door(name: str, door: Door, doors: dict[str, Door]) -> None:
    if door.mode != "face" and not door.credentials:
        raise ValueError(f"doors.{name}: mode {door.mode} needs at least one credential kind")
    if door.mode not in NEEDS_FACE:
        return
    # Invariant 6: the face is never the only way in.
    other = door.alternative_door
    if other is None:
        raise ValueError(
            f"doors.{name}: mode {door.mode} needs the face, so it must name an alternative_door whose mode "
            "takes a credential alone (the face is never the only way in)"
        )
    if other not in doors or doors[other].mode not in CREDENTIAL_ALONE:
        raise ValueError(
            f"doors.{name}: alternative_door {other!r} must be a door of this policy whose mode takes a "
            f"credential alone ({', '.join(sorted(CREDENTIAL_ALONE))})"
        )


def _once(seen: dict[str, str], key: str, subject: str, what: str) -> None:
    if key in seen:
        raise ValueError(f"people.{subject}: the same {what} as people.{seen[key]}")
    seen[key] = subject
