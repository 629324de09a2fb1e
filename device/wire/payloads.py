"""Typed models of the face event's body: they build the payload, and its JSON Schema is generated
from them (device/api/schemas/<part>.json), so the published contract cannot drift from the code.

`EVENT_FACE_PARTS` lists the body's parts; a new part (say `match`) is one model and one entry
here, and `python -m device.wire.schemas` rewrites the schema files (a test fails until it is run).

Time semantics: `first_seen`, `last_seen` and `best_frame_time` are the frame times: wall-clock
UTC unix seconds from a camera, and for a replay the time recorded in it (seconds from its start
unless it recorded wall-clock times); `time_source` says which. The envelope's `created_at` and
`expires_at` are always wall-clock UTC unix seconds of the terminal.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from device.contracts import CODES, Reason

TimeSource = Literal["camera_utc", "replay_recorded"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonItem(_Part):
    code: Literal[tuple(CODES)] = Field(  # type: ignore[valid-type]
        description="stable machine-readable code (device/contracts/reasons.py)"
    )
    text: str = Field(description="human text; may be reworded between versions, the code is not")

    @classmethod
    def of(cls, reason: Reason) -> ReasonItem:
        return cls(code=reason.code, text=str(reason))


class Quality(_Part):
    """The quality gate's measures of the best frame (the last one when none passed; only those made)."""

    face_px: float | None = Field(None, description="face box side in pixels")
    yaw: float | None = Field(None, description="degrees, + = to the person's left")
    pitch: float | None = Field(None, description="degrees")
    roll: float | None = Field(None, description="degrees")
    sharpness: float | None = Field(
        None, description="variance of the Laplacian on the face, after exposure normalisation"
    )
    brightness: float | None = Field(None, description="mean grey level 0..255 on the face (as captured)")
    contrast: float | None = Field(
        None, ge=0, description="grey-level spread left after exposure normalisation"
    )
    gamma: float | None = Field(None, gt=0, description="exposure normalisation applied (1 = none)")
    mesh_presence: float | None = Field(None, ge=0, le=1, description="the face mesh's confidence in a face")
    eye_distance_px: float | None = Field(None, ge=0, description="inter-ocular distance in frame pixels")
    clipped: float | None = Field(None, ge=0, le=1, description="share of face pixels at black or white")
    score: float | None = Field(None, ge=0, le=1, description="overall quality used to pick the best frame")


class Liveness(_Part):
    """The liveness session's measures (only those it made)."""

    steps_passed: float | None = Field(None, ge=0, description="challenge steps passed")
    replay_risk: float | None = Field(None, ge=0, description="median replay-risk score (soft cue)")
    blink_depth: float | None = Field(None, description="depth of the detected blink (eye-aspect dip)")
    turn_deg: float | None = Field(None, description="largest head turn seen, degrees")
    planarity: float | None = Field(None, description="best planarity residual of the head turn")
    onset_s: float | None = Field(None, description="seconds from the prompt to the start of the motion")
    tries: float | None = Field(None, ge=1, description="1 + the failed steps asked again (retries used)")


class Observation(_Part):
    """What happened, never what it looked like (no pixels)."""

    track_id: int = Field(ge=0)
    decision: Literal["accepted", "rejected"]
    time_source: TimeSource = Field(
        description="camera_utc: the frame times are wall-clock UTC; replay_recorded: the replay's own times"
    )
    first_seen: float = Field(
        description="frame time of the track's first frame, unix seconds (see time_source)"
    )
    last_seen: float = Field(description="frame time of the track's last frame")
    best_frame_time: float = Field(description="frame time of the frame the event was made from")
    box: tuple[float, float, float, float] = Field(description="face box x0, y0, x1, y1 in frame pixels")
    quality: Quality
    liveness: Liveness
    reasons: list[ReasonItem] = Field(description="why rejected, or which checks passed, in order")
    alignment: Literal["mesh_5point", "keypoints_3point"] | None = Field(
        description="which landmarks aligned the embedder's chip (null: no embedding)"
    )


class Embedder(_Part):
    name: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Sealed(_Part):
    alg: str
    recipient: str = Field(description="first 16 hex digits of the SHA-256 of the backend key")
    ciphertext: str = Field(
        json_schema_extra={"contentEncoding": "base64"},
        description="libsodium sealed box of {embedding, embedding_dim, embedding_encoding, thumbnail...}",
    )


class Biometric(_Part):
    """The protected embedding and optional masked face-only thumbnail; in the clear or sealed."""

    template_key_id: str | None = Field(
        description="renewable-template key id, null when the transform is off"
    )
    embedder: Embedder | None = Field(
        None, description="the model that made the embedding (never compare two)"
    )
    embedding: str | None = Field(
        None,
        json_schema_extra={"contentEncoding": "base64"},
        description="float32 little-endian, L2-normalised",
    )
    embedding_dim: int | None = Field(None, ge=1)
    embedding_encoding: Literal["float32-le-base64"] | None = None
    probe: Literal["single", "flip"] | None = Field(
        None,
        description="what the embedding is: flip = the normalised sum of the face chip's and its mirror "
        "image's descriptors (as templates are); single = the chip alone. They score differently: match each "
        "with its own threshold curves (models/manifest.json: thresholds, thresholds.single_view). Beside the "
        "embedding (inside the sealed blob when it is sealed); absent from terminals before it existed (flip)",
    )
    thumbnail: str | None = Field(
        None,
        json_schema_extra={"contentEncoding": "base64", "contentMediaType": "image/png"},
        description="lossless PNG of the face only: exactly black outside the face ellipse, pixels only "
        "(IHDR, IDAT, IEND)",
    )
    thumbnail_format: Literal["png"] | None = None
    thumbnail_size: tuple[int, int] | None = Field(None, description="width, height in pixels")
    notes: list[str] | None = None
    sealed: Sealed | None = None
    withheld: Literal["identity policy"] | None = Field(
        None,
        description="no biometric at all: identity.send_embedding / send_thumbnail kept it on the terminal",
    )


class Match(_Part):
    """On-device open-set 1:N against the signed gallery (present only when a gallery is loaded)."""

    subject: str | None = Field(
        description="the matched subject id; null = unknown (never forced onto the nearest)"
    )
    score: float | None = Field(description="best subject's cosine (null: none usable, no match)")
    margin: float | None = Field(description="best minus second-best subject score")
    threshold: float | None = Field(
        description="the threshold in force (per-search false-accept target over the gallery size)"
    )
    gallery_version: int = Field(ge=0)
    probe: Literal["single", "flip"] | None = Field(
        None,
        description="the probe the score and threshold are of: single = the face chip alone, flip = averaged "
        "with its mirror image (embedded only when the single view's score came within the mirror band of "
        "its threshold); each has its own threshold curve",
    )


EVENT_FACE_PARTS: dict[str, type[_Part]] = {
    "observation": Observation,
    "biometric": Biometric,
    "match": Match,
}


def dump(part: _Part) -> dict[str, Any]:
    """The payload dict: optional fields that are not set are left out (null only where required)."""
    return part.model_dump(mode="json", exclude_unset=True)
