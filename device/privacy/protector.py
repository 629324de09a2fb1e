"""The privacy stage: turns a FaceObservation into the only body that may leave the terminal.

`protect` splits it into `observation` (metadata: never an image) and `biometric` (embedding and
thumbnail, in the clear or sealed to the backend), `sign` adds the terminal's Ed25519 signature,
`report` says what this terminal sends and keeps (privacy.report).
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.config import Config
from device.config.identity import SendPolicy
from device.contracts import FaceObservation
from device.identity.runtime import MatchResult
from device.privacy import seal as sealing
from device.privacy.report import build_report
from device.privacy.signing import Signer, load_signer
from device.privacy.template import TemplateTransform, load_transform
from device.privacy.terminalseal import TerminalOpener
from device.privacy.thumbnail import ThumbnailError, ThumbnailPolicy, make_thumbnail
from device.wire.payloads import (
    Biometric,
    Liveness,
    Match,
    Observation,
    Quality,
    ReasonItem,
    TimeSource,
    dump,
)

log = logging.getLogger(__name__)

EMBEDDING_ENCODING = "float32-le-base64"
UNSAFE_TEST_ENV = "FACEONLY_UNSAFE_TEST_SETTINGS"


def encode_embedding(embedding: np.ndarray) -> str:
    return base64.b64encode(np.asarray(embedding, "<f4").reshape(-1).tobytes()).decode()


def decode_embedding(text: str) -> np.ndarray:
    """The float32 vector from a payload's `embedding` field (base64 of little-endian float32)."""
    return np.frombuffer(base64.b64decode(text, validate=True), "<f4").astype(np.float32)


def releases(policy: SendPolicy, matched: bool) -> bool:
    """Whether a biometric leaves under `policy`: unknown_only sends it only for a face NOT matched on the
    terminal (without a gallery no face is matched, so it is sent as before)."""
    return policy == "always" or (policy == "unknown_only" and not matched)


def as_sent(obs: FaceObservation, send_embedding: SendPolicy, matched: bool) -> FaceObservation:
    """The observation whose embedding leaves. An unknown face's embedding may become a template at the back
    office (enrolment from its event), and templates are flip-averaged: it leaves as the flip average (the
    mirror image embedded now if the decision did not need it). A matched face's leaves as it decided, its
    kind stated (biometric.probe)."""
    if releases(send_embedding, matched) and not matched:
        return obs.with_flip()
    return obs


def observation_fields(obs: FaceObservation, time_source: TimeSource) -> dict[str, Any]:
    """The metadata half of an event: what happened, never what it looked like."""
    return dump(
        Observation(
            track_id=int(obs.track_id),
            decision=obs.decision,
            time_source=time_source,
            first_seen=float(obs.first_seen),
            last_seen=float(obs.last_seen),
            best_frame_time=float(obs.best_frame_time),
            box=tuple(round(float(v), 2) for v in obs.box),
            quality=Quality(**{k: float(v) for k, v in obs.quality.items()}),
            liveness=Liveness(**{k: float(v) for k, v in obs.liveness.items()}),
            reasons=[ReasonItem.of(r) for r in obs.reasons],
            alignment=obs.alignment,
        )
    )


@dataclass(frozen=True)
class PayloadProtector:
    signer: Signer
    thumbnails: ThumbnailPolicy | None  # None: thumbnail policy "off"
    backend_key: bytes | None  # None: sealing off
    template: TemplateTransform | None  # None: template transform off
    summary: dict[str, Any]  # privacy.report, fixed at start
    time_source: TimeSource = "camera_utc"  # what the frame times of this terminal's source mean
    send_embedding: SendPolicy = "unknown_only"  # identity.send_embedding
    send_thumbnail: SendPolicy = "unknown_only"  # identity.send_thumbnail

    def biometric_fields(
        self,
        obs: FaceObservation,
        send_embedding: bool = True,
        send_thumbnail: bool = True,
        transform: bool = True,
    ) -> dict[str, Any]:
        content: dict[str, Any] = {}
        notes: list[str] = []
        if not send_embedding and not send_thumbnail:
            # Minimisation (identity.send_*): nothing biometric at all, not even sealed.
            return dump(
                Biometric(
                    template_key_id=self.template.key_id if self.template is not None else None,
                    withheld="identity policy",
                )
            )
        if obs.embedding is not None and send_embedding:
            vector = np.asarray(obs.embedding, np.float32).reshape(-1)
            if self.template is not None and transform:
                vector = self.template.apply(vector)
            content["embedding"] = encode_embedding(vector)
            content["embedding_dim"] = int(vector.size)
            content["embedding_encoding"] = EMBEDDING_ENCODING
            content["probe"] = obs.probe  # which threshold curves a backend must match it with
        if (
            send_thumbnail
            and self.thumbnails is not None
            and obs.face_crop is not None
            and obs.crop_face_box is not None
        ):
            try:
                thumb = make_thumbnail(
                    obs.face_crop, obs.crop_face_box, self.thumbnails, obs.crop_face_outline
                )
            except ThumbnailError as exc:
                # The event still goes out (it must not be lost), only without an image.
                log.warning("thumbnail withheld: %s", exc)
                thumb = None
                notes.append(f"thumbnail withheld: {exc}")
            if thumb is not None:
                content["thumbnail"] = base64.b64encode(thumb.png).decode()
                content["thumbnail_format"] = "png"
                content["thumbnail_size"] = [thumb.width, thumb.height]
        out: dict[str, Any] = {"template_key_id": self.template.key_id if self.template is not None else None}
        if "embedding" in content and obs.embedding_model is not None:
            # In the clear even when sealed: a backend must never compare embeddings of two models.
            model = obs.embedding_model
            out["embedder"] = {"name": model.name, "file": model.file, "sha256": model.sha256}
        if notes:
            out["notes"] = notes
        if self.backend_key is not None:
            out["sealed"] = sealing.seal(self.backend_key, content)
        else:
            out.update(content)
        return dump(Biometric(**out))

    def enrolment_fields(self, obs: FaceObservation) -> dict[str, Any]:
        """The enroll reply's biometric: the template as the gallery holds it (the raw embedding, which is
        what the terminal matches probes against) and the thumbnail if the policy allows; sealed to the
        backend when sealing is on."""
        fields = self.biometric_fields(obs.with_flip(), True, True, transform=False)
        fields["template_key_id"] = None
        return fields

    def protect(self, observation: FaceObservation, match: MatchResult | None = None) -> dict[str, Any]:
        """The event body; with a gallery loaded `match` is the 1:N decision, and identity.send_embedding /
        send_thumbnail decide whether the biometric goes with it."""
        matched = match is not None and match.subject is not None
        observation = as_sent(observation, self.send_embedding, matched)
        body: dict[str, Any] = {
            "observation": observation_fields(observation, self.time_source),
            "biometric": self.biometric_fields(
                observation, releases(self.send_embedding, matched), releases(self.send_thumbnail, matched)
            ),
        }
        if match is not None:
            body["match"] = dump(Match(**match.as_event()))
        return body

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.signer.sign(payload)

    def unseal(self, sealed_b64: str) -> bytes:
        """What the backend sealed to this terminal (gallery data, an enrolment's display name); SealError."""
        return TerminalOpener(self.signer.key).open(sealed_b64)

    def report(self) -> dict[str, Any]:
        return self.summary


def build_protector(config: Config, state_dir: Path) -> PayloadProtector:
    """The configured protector; creates the signing (and template) key on first start.

    Raises KeyFileError for a damaged key file, ValueError for an unreadable backend key or for the
    test-only oversized thumbnail without FACEONLY_UNSAFE_TEST_SETTINGS=1 in the environment.
    """
    privacy = config.privacy
    if privacy.unsafe_test_thumbnail_size is not None and os.environ.get(UNSAFE_TEST_ENV) != "1":
        # Config can also arrive remotely (config.set): a test-only setting must not be switchable that way.
        raise ValueError(
            f"privacy.unsafe_test_thumbnail_size is a TEST-ONLY setting; it is refused unless the process "
            f"environment has {UNSAFE_TEST_ENV}=1"
        )
    state_dir = Path(state_dir)
    signer, created = load_signer(privacy.signing_key_file or state_dir / "signing.key")
    # What `faceonly backend terminals add --confirm KEY_ID` asks the operator to compare.
    log.info(
        "signing key id %s%s (public key %s)",
        signer.key_id,
        ", created now" if created else "",
        base64.b64encode(signer.public_key).decode(),
    )
    template = None
    if privacy.template_transform:
        template, _ = load_transform(privacy.template_key_file or state_dir / "template.key")
    if privacy.thumbnail_quality is not None:
        log.warning(
            "privacy.thumbnail_quality has no effect: the thumbnail is a lossless PNG (remove the line)"
        )
    thumbnails = None
    if privacy.thumbnail == "face":
        thumbnails = ThumbnailPolicy(privacy.effective_thumbnail_size, privacy.thumbnail_margin)
    backend_key = privacy.read_backend_public_key() if privacy.seal else None
    summary = build_report(config, signer, backend_key, template)
    # A replay's frames carry the times recorded in it, a camera's the terminal's wall clock (UTC).
    time_source: TimeSource = (
        "replay_recorded" if config.vision.source.startswith("replay:") else "camera_utc"
    )
    return PayloadProtector(
        signer,
        thumbnails,
        backend_key,
        template,
        summary,
        time_source=time_source,
        send_embedding=config.identity.send_embedding,
        send_thumbnail=config.identity.send_thumbnail,
    )
