from typing import Literal

from pydantic import Field

from device.config.base import Section


class PrivacyConfig(Section):
    thumbnail: Literal["off", "face"] = Field(
        "face", description="Send a masked face-only thumbnail, or none."
    )
    thumbnail_size: int = Field(112, ge=16, le=224, description="Largest thumbnail side in pixels.")
