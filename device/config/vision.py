from pydantic import Field

from device.config.base import Section


class VisionConfig(Section):
    source: str = Field("replay:demo", description="picamera2 | v4l2:N | replay:PATH")
