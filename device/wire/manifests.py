"""The two file formats the terminal reads beside its config: a replay folder's `replay.json` and the
model manifest `models/manifest.json` (written by scripts/build_models.py)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from device.wire.base import Number, Wire


def _inside_folder(name: str) -> str:
    if name.startswith("/") or "\\" in name or ".." in PurePosixPath(name).parts:
        raise ValueError("points outside the replay folder")
    return name


class ReplayFrame(Wire):
    file: Annotated[str, AfterValidator(_inside_folder)] = Field(
        min_length=1, description="frame image, relative to the replay folder"
    )
    t: Number = Field(ge=0, description="seconds (from the replay's start, or wall-clock UTC if recorded so)")


class ReplayManifest(Wire):
    """A replay folder's replay.json: its frames in order, with their recorded times (non-decreasing)."""

    format: Literal[1]
    frames: list[ReplayFrame] = Field(min_length=1)

    @model_validator(mode="after")
    def _time_goes_forward(self) -> ReplayManifest:
        for i in range(1, len(self.frames)):
            if self.frames[i].t < self.frames[i - 1].t:
                raise ValueError(f"frame {i} time {self.frames[i].t} goes back before {self.frames[i - 1].t}")
        return self


def _plain_file_name(name: str) -> str:
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError("must be a file name inside models/")
    return name


class ModelFile(Wire):
    """One shipped file. What is measured about it (provenance, licence, accuracy, thresholds, latency) sits
    beside these keys, free-form, for people and for the parts that read it (device.identity.thresholds)."""

    model_config = Wire.model_config | ConfigDict(extra="allow")

    file: Annotated[str, AfterValidator(_plain_file_name)] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1, strict=True)
    kind: Literal["tflite", "onnx", "data"] = "tflite"


class ModelManifest(Wire):
    """models/manifest.json: every model the terminal may load, with the sha256 it is checked against."""

    format: Literal[1]
    build: dict[str, Any] = Field(default_factory=dict, description="how the files were made")
    models: dict[str, ModelFile] = Field(min_length=1)
    not_shipped: dict[str, Any] = Field(default_factory=dict)
