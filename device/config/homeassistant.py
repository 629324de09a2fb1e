"""[homeassistant]: optional MQTT discovery, so each terminal shows up in Home Assistant as a device."""

from __future__ import annotations

from pydantic import Field

from device.config.base import Section


class HomeAssistantConfig(Section):
    enabled: bool = Field(
        False, description="Publish retained Home Assistant MQTT discovery configs and a small state topic."
    )
    discovery_prefix: str = Field(
        "homeassistant",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        max_length=128,
        description="Home Assistant's discovery prefix (its MQTT integration setting; default homeassistant).",
    )
    expose_subject: bool = Field(
        False,
        description="Also show the last matched subject id (never a display name). Off: the subject stays "
        "between the terminal and its backend; anyone who may read the state topic would see who passed.",
    )
