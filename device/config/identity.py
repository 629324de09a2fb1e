"""[identity]: open-set 1:N against the signed gallery, and what leaves the terminal for a matched face."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from device.config.base import Section
from device.identity.thresholds import CLAIM_FAR

SendPolicy = Literal["unknown_only", "always", "never"]


class IdentityConfig(Section):
    false_accept_per_search: float = Field(
        1e-3,
        ge=1e-7,
        le=1e-1,
        title="False accepts per search",
        description="Target share of strangers accepted as SOME enrolled subject per search; turned into a "
        "per-comparison target from the gallery size and read off the embedder's calibrated threshold curve.",
    )
    false_accept_per_claim: float = Field(
        CLAIM_FAR,
        ge=1e-7,
        le=1e-1,
        title="False accepts per claim",
        description="1:1 (door mode credential+face): target share of faces of SOMEONE ELSE accepted for a "
        "claimed person, read off the same curves over that person's templates.",
    )
    top_k: int = Field(
        3, ge=1, le=10, description="Candidates reported per search (the event keeps the best)."
    )
    gallery_public_key_file: Path | None = Field(
        None,
        description="The backend's Ed25519 gallery key (base64 public key). Only this file decides which "
        "galleries are accepted; it is never settable remotely. Unset: no gallery, no 1:N.",
    )
    gallery_file: Path | None = Field(
        None, description="Where the encrypted gallery lives (default <state_dir>/gallery.sealed)."
    )
    gallery_key_file: Path | None = Field(
        None, description="The terminal's gallery-at-rest key (default <state_dir>/gallery.key, 0600)."
    )
    send_embedding: SendPolicy = Field(
        "unknown_only",
        description="With a gallery loaded: unknown_only = a matched face leaves as subject id and score, "
        "no embedding; always; never. Without a gallery every accepted face carries its embedding unless never.",
    )
    send_thumbnail: SendPolicy = Field(
        "unknown_only",
        description="The same choice for the thumbnail (privacy.thumbnail = off still sends none at all).",
    )
