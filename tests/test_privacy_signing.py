"""Terminal signing keys (0600, atomic, never silently replaced) and signed payloads."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.privacy.keyfile import KeyFileError
from device.privacy.signing import SignatureError, canonical_json, load_signer, verify_payload

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)  # JSON's interoperable integer range (RFC 8785)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_key_created_once_with_0600(tmp_path):
    path = tmp_path / "state" / "signing.key"
    signer, created = load_signer(path)
    assert created
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created_again = load_signer(path)
    assert not created_again and again.public_key == signer.public_key
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temp file left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_torn_key_is_reported_and_left_alone(tmp_path, damage):
    path = tmp_path / "signing.key"
    load_signer(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-5]
    elif damage == "flip":
        data[-1] ^= 0xFF
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(KeyFileError, match="damaged"):
        load_signer(path)
    assert path.read_bytes() == bytes(data)  # not regenerated over the damaged key


def test_key_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "signing.key"
    load_signer(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_signer(path)


def test_sign_and_verify_and_tampering(tmp_path):
    signer, _ = load_signer(tmp_path / "k")
    payload = {
        "schema": 1,
        "type": "event.face",
        "observation": {"track_id": 7, "quality": {"sharpness": 81.5}},
    }
    signed = signer.sign(payload)
    assert signed["signature"]["alg"] == "Ed25519" and signed["signature"]["key_id"] == signer.key_id
    assert "signature" not in payload  # the input is not changed
    verify_payload(signed, signer.public_key)
    tampered = dict(signed, observation={"track_id": 8, "quality": {"sharpness": 81.5}})
    with pytest.raises(SignatureError, match="does not match"):
        verify_payload(tampered, signer.public_key)
    other, _ = load_signer(tmp_path / "other")
    with pytest.raises(SignatureError, match="signed by key"):
        verify_payload(signed, other.public_key)
    with pytest.raises(SignatureError, match="no signature"):
        verify_payload(payload, signer.public_key)


def test_values_outside_json_interop_are_refused_clearly(tmp_path):
    signer, _ = load_signer(tmp_path / "k")
    for bad in ({"n": 2**53}, {"x": float("nan")}):
        with pytest.raises(ValueError, match="cannot be canonicalised"):
            signer.sign(bad)


def test_canonical_form_is_rfc8785():
    # ECMAScript number formatting: what a JavaScript or Go JCS library produces for the same payload.
    assert canonical_json({"b": 1.0, "a": [1e-07, 0.1], "signature": {}}) == b'{"a":[1e-7,0.1],"b":1}'


@settings(max_examples=80, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_signature_survives_json_round_trip(tmp_path_factory, payload):
    import json

    signer, _ = load_signer(tmp_path_factory.getbasetemp() / "hyp.key")
    signed = signer.sign(payload)
    received = json.loads(json.dumps(signed))  # what a consumer parses off the wire
    verify_payload(received, signer.public_key)
    assert canonical_json(received) == canonical_json(signed)
