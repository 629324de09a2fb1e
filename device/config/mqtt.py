from pydantic import Field

from device.config.base import Section


class MqttConfig(Section):
    broker: str | None = Field(
        None, description="mqtt://host:port or mqtts://host:port; none: embedded demo broker."
    )
    topic_prefix: str = Field("faceonly", description="Root of every topic; the API version follows it.")


class OutboxConfig(Section):
    max_events: int = Field(10_000, ge=1, description="Most events kept while the broker is unreachable.")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Most bytes kept on disk.")
    max_age_s: float = Field(7 * 24 * 3600, gt=0, description="Queued events older than this expire.")
