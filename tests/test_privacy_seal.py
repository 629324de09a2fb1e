"""Sealed biometric payloads: only the backend's private key opens them."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from nacl.public import PrivateKey

from device.privacy.protector import decode_embedding, encode_embedding
from device.privacy.seal import SealError, open_sealed, seal
from device.privacy.signing import key_id


@pytest.fixture
def backend() -> PrivateKey:
    return PrivateKey.generate()


def test_round_trip_gives_back_the_exact_embedding(backend):
    embedding = np.random.default_rng(1).standard_normal(1024).astype(np.float32)
    blob = seal(bytes(backend.public_key), {"embedding": encode_embedding(embedding), "embedding_dim": 1024})
    event = {
        "schema": 1,
        "observation": {"track_id": 3},
        "biometric": {"sealed": blob, "template_key_id": None},
    }
    for form in (event, event["biometric"], blob):
        content = open_sealed(backend, form)
        assert np.array_equal(decode_embedding(content["embedding"]), embedding)
    # The key may also be given as raw bytes or base64 text.
    assert open_sealed(base64.b64encode(bytes(backend)).decode(), event)["embedding_dim"] == 1024
    assert open_sealed(bytes(backend), event)["embedding_dim"] == 1024


def test_subscriber_without_the_key_reads_nothing(backend):
    embedding = np.random.default_rng(2).standard_normal(1024).astype(np.float32)
    encoded = encode_embedding(embedding)
    blob = seal(
        bytes(backend.public_key),
        {"embedding": encoded, "thumbnail": base64.b64encode(b"\xff\xd8jpeg").decode()},
    )
    wire = json.dumps(blob)
    assert encoded not in wire and embedding.tobytes() not in base64.b64decode(blob["ciphertext"])
    assert set(blob) == {"alg", "recipient", "ciphertext"}
    assert blob["recipient"] == key_id(bytes(backend.public_key))
    eavesdropper = PrivateKey.generate()
    with pytest.raises(SealError, match="sealed to key"):
        open_sealed(eavesdropper, blob)
    # Even lying about the recipient does not help: the box does not open.
    forged = dict(blob, recipient=key_id(bytes(eavesdropper.public_key)))
    with pytest.raises(SealError, match="does not decrypt"):
        open_sealed(eavesdropper, forged)


def test_altered_ciphertext_is_detected(backend):
    blob = seal(bytes(backend.public_key), {"embedding": "AAAA"})
    raw = bytearray(base64.b64decode(blob["ciphertext"]))
    raw[-1] ^= 1
    with pytest.raises(SealError, match="does not decrypt"):
        open_sealed(backend, dict(blob, ciphertext=base64.b64encode(bytes(raw)).decode()))


def test_unsealed_payload_is_reported_clearly(backend):
    with pytest.raises(SealError, match="no sealed"):
        open_sealed(backend, {"biometric": {"embedding": "AAAA"}})
