"""Privacy settings: the thumbnail that may leave, payload sealing, renewable templates and signing keys.

Everything here is reported by `privacy.report`; see docs/privacy.md for what each switch means.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from device.config.base import Section

# The largest thumbnail an operator may configure; only the test-only override can exceed it.
MAX_THUMBNAIL_SIZE = 224
X25519_KEY_BYTES = 32


# The header of faceonly's checksummed secret files (device.infra.atomicfile): signing.key, gallery.key, ...
_SECRET_FILE_MAGIC = b"FO1\n"


def read_public_key_file(path: Path) -> bytes:
    """The 32 raw bytes of a public key file (base64 text, as `faceonly keys generate` and `gallery keygen` write
    FILE.pub). ValueError says what the file is instead when it is another kind of key."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    if data.startswith(_SECRET_FILE_MAGIC):
        raise ValueError(
            "is a faceonly secret key file (like <state_dir>/signing.key or gallery.key, or a private key from "
            "`gallery keygen`), not a public key: give the FILE.pub next to the private key"
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(
            "is binary, not a base64 public key (FILE.pub from `faceonly keys generate`)"
        ) from None
    try:
        return decode_public_key(text)
    except ValueError as exc:
        if Path(path).with_name(Path(path).name + ".pub").exists():
            raise ValueError(f"{exc}: it looks like a private key; its public key is {path}.pub") from None
        raise


def decode_public_key(text: str) -> bytes:
    """A 32-byte X25519/Ed25519 public key from base64 (standard or URL-safe) text; ValueError otherwise."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(raw) != X25519_KEY_BYTES:
        raise ValueError(f"must decode to {X25519_KEY_BYTES} bytes, got {len(raw)}")
    return raw


class PrivacyConfig(Section):
    thumbnail: Literal["off", "face"] = Field(
        "face",
        title="Thumbnail policy",
        description="face: send a face-only thumbnail (lossless PNG of the face box + margin, black outside an "
        "ellipse fitted to the face); "
        "off: send no image at all.",
    )
    thumbnail_size: int = Field(
        112, ge=16, le=MAX_THUMBNAIL_SIZE, description="Largest thumbnail side in pixels (never upscaled)."
    )
    thumbnail_margin: float = Field(
        0.2,
        ge=0,
        le=0.5,
        description="Margin added around the face box on each side, as a share of its size.",
    )
    thumbnail_quality: int | None = Field(
        None,
        ge=75,
        le=95,
        description="No effect: the thumbnail is a lossless PNG. Still accepted (with a warning at start) so "
        "that a config file written for the earlier JPEG thumbnail loads unchanged.",
    )
    unsafe_test_thumbnail_size: int | None = Field(
        None,
        ge=16,
        le=4096,
        title="TEST ONLY: oversized thumbnail",
        description="TEST ONLY, never on a real terminal: overrides thumbnail_size without its cap so that "
        "`faceonly audit` can be shown failing. Refused at start unless FACEONLY_UNSAFE_TEST_SETTINGS=1 is "
        "in the environment; privacy.report flags it as unsafe.",
    )
    seal: bool = Field(
        False,
        description="Encrypt the embedding and thumbnail to the backend's X25519 public key (sealed box): "
        "the broker and anyone on the path see only metadata.",
    )
    backend_public_key: str | None = Field(
        None,
        description="The backend's X25519 public key, base64 (32 bytes). Or use backend_public_key_file.",
    )
    backend_public_key_file: Path | None = Field(
        None, description="File holding the backend's X25519 public key as base64 text; read at start."
    )
    template_transform: bool = Field(
        False,
        description="Send embeddings through a keyed orthogonal transform (renewable templates): scores are "
        "unchanged, rotating the key revokes every template made under the old one.",
    )
    template_key_file: Path | None = Field(
        None,
        description="Template transform key (32 random bytes, faceonly sealed-file format); default "
        "<state_dir>/template.key, created on first start. Give every terminal of a fleet the same file.",
    )
    signing_key_file: Path | None = Field(
        None,
        description="This terminal's Ed25519 signing key; default <state_dir>/signing.key, created on first start (0600).",
    )
    prompt_subject: bool = Field(
        False,
        description="Prompts on the MQTT prompt topic carry the matched subject id (never a display name: names "
        "stay on the terminal's own screen). Off: codes and numbers only.",
    )

    @field_validator("backend_public_key")
    @classmethod
    def _key_is_base64(cls, value: str | None) -> str | None:
        if value is not None:
            decode_public_key(value)
        return value

    @model_validator(mode="after")
    def _sealing_needs_a_key(self) -> PrivacyConfig:
        if self.backend_public_key is not None and self.backend_public_key_file is not None:
            raise ValueError("set backend_public_key or backend_public_key_file, not both")
        if self.seal and self.backend_public_key is None and self.backend_public_key_file is None:
            raise ValueError("seal = true needs backend_public_key or backend_public_key_file")
        return self

    @property
    def effective_thumbnail_size(self) -> int:
        return self.unsafe_test_thumbnail_size or self.thumbnail_size

    def read_backend_public_key(self) -> bytes | None:
        """The backend key's 32 raw bytes, or None when none is configured. ValueError names a bad file."""
        if self.backend_public_key is not None:
            return decode_public_key(self.backend_public_key)
        if self.backend_public_key_file is None:
            return None
        try:
            return read_public_key_file(self.backend_public_key_file)
        except ValueError as exc:
            raise ValueError(
                f"privacy.backend_public_key_file {self.backend_public_key_file}: {exc}"
            ) from None
