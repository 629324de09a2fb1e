"""One version counter per gallery: the manifest says who keeps it (`authority`), the terminal reports it and
refuses a lab update once a backend keeps its gallery (`managed`); a manifest made before the field existed
is a lab one; an update that removes the last subject applies (the terminal's gallery may be empty)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nacl.signing import SigningKey

from device.contracts import ModelRef
from device.identity import gallery as gal
from device.identity import operator as op
from device.identity.runtime import Identity
from device.identity.thresholds import CurveSet, ThresholdCurve
from device.privacy.signing import Signer
from device.vision.embed import l2_normalise

EMBEDDER = ModelRef("embedder", "embedder_dlib_resnet_int8.tflite", "ab" * 32)
SIGNER = Signer(SigningKey(b"\x03" * 32))
CURVES = CurveSet({1: ThresholdCurve.from_points([[1e-2, 0.9], [1e-4, 0.95]])})


def _subject(sid: str, seed: int) -> gal.Subject:
    return gal.check_subject(sid, None, l2_normalise(np.random.default_rng(seed).normal(size=(1, gal.DIM))))


def _identity(tmp_path: Path) -> Identity:
    return Identity(EMBEDDER, CURVES, SIGNER.public_key, tmp_path / "g.sealed", tmp_path / "g.key", 1e-3)


def test_a_backend_gallery_refuses_lab_updates_and_reports_its_authority(tmp_path: Path) -> None:
    identity = _identity(tmp_path)
    lab = op.snapshot(SIGNER, [_subject("ann", 1)], 3, EMBEDDER)
    assert identity.apply_update(lab.manifest, lab.body)["authority"] == "lab"
    backend = op.snapshot(SIGNER, [_subject("ann", 1), _subject("bob", 2)], 4, EMBEDDER, authority="backend")
    assert identity.apply_update(backend.manifest, backend.body)["authority"] == "backend"
    newer_lab = op.snapshot(SIGNER, [_subject("eve", 3)], 9, EMBEDDER)
    with pytest.raises(gal.GalleryRefused) as refused:
        identity.apply_update(newer_lab.manifest, newer_lab.body)
    assert refused.value.reason == "managed" and identity.summary()["version"] == 4
    with pytest.raises(gal.GalleryRefused, match="managed"):
        identity.sync(newer_lab.manifest)
    # Kept across a restart: the stored manifest says who keeps it.
    assert _identity(tmp_path).summary()["authority"] == "backend"
    # The backend's own delta removing the last subjects applies: an empty gallery needs no threshold.
    base = op.read_update(_write(tmp_path / "v4.fog", backend))
    empty = op.delta(SIGNER, base, EMBEDDER, remove=("ann", "bob"), authority="backend")
    assert identity.apply_update(empty.manifest, empty.body)["count"] == 0
    bad = dict(empty.manifest, authority="somebody")
    with pytest.raises(gal.GalleryRefused, match="malformed"):
        gal.check_manifest(
            SIGNER.sign({k: v for k, v in bad.items() if k != "signature"}), SIGNER.public_key, EMBEDDER
        )


def test_a_manifest_from_before_authority_is_a_lab_one(tmp_path: Path) -> None:
    snap = op.snapshot(SIGNER, [_subject("ann", 1)], 1, EMBEDDER)
    old = {k: v for k, v in snap.manifest.items() if k not in ("authority", "signature")}
    manifest = gal.check_manifest(SIGNER.sign(old), SIGNER.public_key, EMBEDDER)
    assert gal.apply(manifest, snap.body, None, EMBEDDER).authority == "lab"


def _write(path: Path, update: op.UpdateFile) -> Path:
    op.write_update(path, update)
    return path
