"""[screen]: the door screen the terminal serves on loopback for its own display, and its voice."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from device.config.base import Section

Language = Literal["en", "de", "fr"]


class ScreenConfig(Section):
    enabled: bool = Field(
        False,
        description="Serve the door screen (one instruction at a time, a face guide drawn from landmarks, the "
        "outcome with the display name) for the terminal's own display, e.g. Chromium in kiosk mode.",
    )
    listen: str = Field(
        "127.0.0.1:8470",
        description="host:port of the door screen's page; loopback only (127.0.0.1, ::1 or localhost), since "
        "it shows display names. Port 0 picks a free port (logged).",
    )
    language: Language = Field("en", description="Language of the screen and the voice: en, de or fr.")
    site_name: str = Field("faceonly", min_length=1, max_length=60, description="Shown on the idle screen.")
    alternative: str = Field(
        "your badge, or ring the bell",
        min_length=1,
        max_length=80,
        description="The site's other way in, in the screen's language: 'Not recognised — please use <this>'.",
    )
    result_hold_s: float = Field(4.0, ge=1.0, le=30.0, description="Seconds an outcome stays on the screen.")
    guide_rate_hz: float = Field(
        15.0, ge=1.0, le=30.0, description="Most face-guide updates per second sent to the screen."
    )
    voice: bool = Field(
        False,
        description="Speak the prompts through the local audio output (espeak-ng from the distribution, in "
        "the screen's language; never a network service).",
    )

    @field_validator("listen")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        host = host.strip("[]")
        if host != "localhost":
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                raise ValueError("host must be an IP address or localhost") from None
            if not loopback:
                raise ValueError("the door screen listens on loopback only (it shows display names)")
        return value

    @property
    def host(self) -> str:
        host = self.listen.rpartition(":")[0].strip("[]")
        return "127.0.0.1" if host == "localhost" else host

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
