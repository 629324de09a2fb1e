from pathlib import Path

from pydantic import Field

from device.config.base import Section, remote


class ServiceConfig(Section):
    state_dir: Path = Field(
        Path("var/state"),
        description="Writable directory for the outbox, keys and gallery (systemd StateDirectory on a terminal).",
    )
    models_dir: Path | None = Field(
        None, description="Directory holding models/manifest.json; default: bundled."
    )
    health_interval_s: float = Field(
        10.0,
        gt=0.1,
        le=3600,
        description="Seconds between health messages.",
        json_schema_extra=remote(live=True, ge=1.0),
    )
    num_threads: int = Field(
        1, ge=1, le=8, description="LiteRT threads per model.", json_schema_extra=remote(live=False)
    )
    camera_stall_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds without a frame after which health raises the camera_stall alarm (file only: "
        "a remote change could hide a stall).",
    )
    prompt_socket: Path | None = Field(
        None,
        description="Local AF_UNIX datagram socket of the terminal's screen or speaker: every liveness prompt "
        "is sent there as one JSON datagram, broker or not (the MQTT prompt topic is one more listener).",
    )
    stop_flush_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="On SIGTERM, seconds spent publishing what the outbox holds (the outbox keeps the rest).",
        json_schema_extra=remote(live=True, le=10.0),
    )
