"""The backend's judgement of one message (faceonly_backend/ingest.py) and its idempotent store.

Every quarantine reason from real signed payloads (Ed25519 over JCS, sealed boxes), fail-closed matching,
the embedder check, and a property test of the store: rows == distinct event ids, and every repeat is
counted as a duplicate, whatever the order and batching.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from device.privacy.protector import encode_embedding
from device.privacy.seal import seal
from device.privacy.signing import Signer, verify_payload
from faceonly_backend.gallery_authority import NO_MATCH, CentralMatch
from faceonly_backend.ingest import QUARANTINE_REASONS, Accepted, Ingest, Quarantined
from faceonly_backend.store import Record, Store
from tests.backend_parts import face_event, public_key

TOPIC = "faceonly/v1/dev/{}/event/face"
SHA = "ab" * 32


@pytest.fixture
def keys():
    return Signer(SigningKey.generate()), PrivateKey.generate()


def _ingest(signer: Signer, backend_key: PrivateKey | None = None, identify=None) -> Ingest:
    pinned = {"t1": public_key(signer)}
    return Ingest("faceonly", lambda: pinned, bytes(backend_key) if backend_key else None, identify)


def _judge(ingest: Ingest, payload: dict | bytes, terminal: str = "t1"):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ingest.handle(TOPIC.format(terminal), raw, time.time())


def test_each_refusal_has_its_reason(keys) -> None:
    signer, _ = keys
    ingest = _ingest(signer)
    other = Signer(SigningKey.generate())
    altered = face_event("t1", signer)
    altered["observation"]["decision"] = "rejected"
    no_id = face_event("t1", None)
    del no_id["id"]
    wrong_type = face_event("t1", None)
    wrong_type["observation"]["reasons"] = 5  # a field of the wrong type, validly signed
    deep = face_event("t1", None)
    deep["observation"]["box"] = json.loads("[" * 600 + "]" * 600)
    deep["signature"] = {"alg": "Ed25519", "key_id": "0" * 16, "value": "AAAA"}
    cases = {
        "payload.too_deep": [b"[" * 100_000, deep],
        "payload.not_utf8": [b'{"a": "\xff\xfe"}'],
        "payload.not_json": [b"{nope", b'{"a": 1e400}'],
        "payload.too_large": [b" " * (1024 * 1024 + 1)],
        "malformed": [b"[1, 2]", signer.sign(no_id), signer.sign(wrong_type), b""],
        "unsigned": [face_event("t1", None)],
        "forged": [altered, face_event("t1", other), face_event("t2", signer)],  # t2's event on t1's topic
        "expired": [face_event("t1", signer, ttl_s=10, now=time.time() - 60)],
    }
    found_later = {"unknown_terminal", "future", "stale", "duplicate", "internal"}
    assert {*cases, *found_later} == set(QUARANTINE_REASONS)
    for reason, payloads in cases.items():
        for payload in payloads:
            verdict = _judge(ingest, payload)
            assert isinstance(verdict, Quarantined) and verdict.reason == reason, (reason, verdict)
            assert len(verdict.detail) < 400
    ghost = _judge(ingest, face_event("ghost", other), terminal="ghost")
    assert isinstance(ghost, Quarantined) and ghost.reason == "unknown_terminal"
    # Not ours: prompts, command replies, other prefixes.
    assert ingest.handle("faceonly/v1/dev/t1/prompt", b"{}", time.time()) is None
    assert ingest.handle("other/v1/dev/t1/event/face", b"{}", time.time()) is None


def test_accepted_event_takes_the_terminals_match_and_fails_closed(keys) -> None:
    signer, _ = keys
    ingest = _ingest(signer)
    event = face_event("t1", None)
    event["match"] = {
        "subject": "emp-1",
        "score": 0.97,
        "margin": 0.1,
        "threshold": 0.93,
        "gallery_version": 3,
    }
    verdict = _judge(ingest, signer.sign(event))
    assert isinstance(verdict, Accepted)
    assert (verdict.record.subject, verdict.record.score, verdict.record.match_source) == (
        "emp-1",
        0.97,
        "terminal",
    )
    event["match"]["score"] = None  # a match without a finite score is no match
    verdict = _judge(ingest, signer.sign(event))
    assert isinstance(verdict, Accepted) and verdict.record.subject is None


def _sealed_event(
    signer: Signer, backend: PrivateKey, vector: np.ndarray, sha: str = SHA, probe: str | None = None
) -> dict:
    event = face_event("t1", None)
    thumb = base64.b64encode(b"\xff\xd8 jpeg bytes").decode()
    content = {"embedding": encode_embedding(vector), "thumbnail": thumb}
    if probe is not None:
        content["probe"] = probe  # beside the embedding, inside the sealed blob
    event["biometric"] = {
        "template_key_id": None,
        "embedder": {"name": "embedder", "file": "e.tflite", "sha256": sha},
        "sealed": seal(bytes(backend.public_key), content),
    }
    return signer.sign(event)


def test_sealed_event_is_opened_and_matched_centrally_only_for_the_same_embedder(keys) -> None:
    signer, backend = keys
    seen, kinds = [], []

    def identify(vector: np.ndarray, sha: str | None, probe: str) -> CentralMatch:
        seen.append(sha)
        kinds.append(probe)
        return CentralMatch("emp-2", 0.99, 0.2, 0.94, "emp-2", 0.99) if sha == SHA else NO_MATCH

    vector = np.ones(128, np.float32) / math.sqrt(128)
    verdict = _judge(_ingest(signer, backend, identify), _sealed_event(signer, backend, vector))
    assert isinstance(verdict, Accepted)
    assert (verdict.record.subject, verdict.record.match_source) == ("emp-2", "backend")
    assert (verdict.record.threshold, verdict.record.margin, verdict.record.nearest) == (0.94, 0.2, "emp-2")
    assert verdict.embedding is None  # kept in the live view only for an unknown face
    assert verdict.thumbnail == b"\xff\xd8 jpeg bytes"
    other_model = _judge(
        _ingest(signer, backend, identify), _sealed_event(signer, backend, vector, "cd" * 32)
    )
    assert isinstance(other_model, Accepted) and other_model.record.subject is None
    # Without the private key the event is still recorded (nothing is lost), unidentified, and says why.
    blind = _judge(_ingest(signer, None, identify), _sealed_event(signer, backend, vector))
    assert isinstance(blind, Accepted) and blind.record.subject is None and "private key" in blind.note
    assert blind.thumbnail is None
    # The probe's kind (sealed with the embedding) picks the threshold family; absent (older terminals): flip.
    assert set(kinds) == {"flip"}
    single = _judge(
        _ingest(signer, backend, identify), _sealed_event(signer, backend, vector, probe="single")
    )
    assert isinstance(single, Accepted) and kinds[-1] == "single"
    # An unknown's flip average is kept (in the live view) to enrol from; a single view never becomes one.
    nobody = _judge(_ingest(signer, backend, identify), _sealed_event(signer, backend, vector, "cd" * 32))
    assert isinstance(nobody, Accepted) and nobody.embedding is not None
    single_unknown = _judge(
        _ingest(signer, backend, identify), _sealed_event(signer, backend, vector, "cd" * 32, "single")
    )
    assert isinstance(single_unknown, Accepted) and single_unknown.record.subject is None
    assert single_unknown.embedding is None


def test_signature_fast_path_falls_back_to_full_jcs(keys) -> None:
    signer, _ = keys
    payload = signer.sign({"tiny": 1e-07, "big": 1e21, "whole": 10.0, "text": "ü\u2028"})
    roundtrip = json.loads(json.dumps(payload))
    verify_payload(roundtrip, signer.public_key)  # JCS writes 1e-7 and 1e+21, Python 1e-07 and 1e+21
    roundtrip["tiny"] = 2e-07
    with pytest.raises(ValueError):
        verify_payload(roundtrip, signer.public_key)


def _record(event_id: str) -> Record:
    return Record(event_id, "t1", 1.0, 2.0, "accepted", None, None, "none", (), {})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.sampled_from([f"e{i}" for i in range(12)]), max_size=8), max_size=8))
def test_store_rows_are_distinct_ids_and_repeats_are_duplicates(tmp_path: Path, batches) -> None:
    path = tmp_path / f"p{abs(hash(str(batches)))}.sqlite"
    store = Store(str(path))
    try:
        for batch in batches:
            store.record([_record(e) for e in batch])
        sent = [e for batch in batches for e in batch]
        assert sorted(store.event_ids()) == sorted(set(sent))
        assert store.quarantine().get("duplicate", 0) == len(sent) - len(set(sent))
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# ---- property-based fuzz of event bodies (the same strategy drives tests/test_backend_hostile.py) --------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Where a signed event's fields are replaced (or dropped): every field the backend reads, and a few it does not.
FUZZ_PATHS = (
    ("type",), ("id",), ("created_at",), ("expires_at",), ("observation",), ("biometric",), ("match",),
    ("observation", "decision"), ("observation", "reasons"), ("observation", "liveness"),
    ("observation", "track_id"), ("match", "subject"), ("match", "score"), ("biometric", "embedding"),
    ("biometric", "thumbnail"), ("biometric", "embedder"), ("biometric", "sealed"), ("extra",),
)  # fmt: skip
DROP = object()


@st.composite
def fuzzed_events(draw, terminal: str = "t1") -> dict:
    """A well-formed face event (with an on-device match) with some of its fields replaced or dropped."""
    event = face_event(terminal, None)
    event["match"] = {
        "subject": "emp-1",
        "score": 0.97,
        "margin": 0.1,
        "threshold": 0.9,
        "gallery_version": 1,
    }
    for path in draw(st.lists(st.sampled_from(FUZZ_PATHS), min_size=1, max_size=4, unique=True)):
        value = draw(st.one_of(st.just(DROP), json_values))
        parent = event
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if value is DROP:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    return event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=fuzzed_events(), signed=st.booleans())
def test_any_event_body_gives_a_verdict_and_every_record_is_storable(
    keys, tmp_path: Path, event, signed
) -> None:
    signer, backend = keys
    identify_calls = []

    def identify(vector: np.ndarray, sha: str | None, probe: str) -> CentralMatch:
        identify_calls.append(vector.shape)
        return NO_MATCH

    try:
        payload = signer.sign(event) if signed else event
    except ValueError:  # what cannot be signed cannot be sent validly signed either
        payload = event
    verdict = _judge(_ingest(signer, backend, identify), payload)
    assert isinstance(verdict, Accepted | Quarantined)
    assert all(shape == (128,) for shape in identify_calls)
    if isinstance(verdict, Quarantined):
        assert verdict.reason in QUARANTINE_REASONS
        return
    store = Store(str(tmp_path / "fuzz.sqlite"))
    try:
        assert store.record([verdict.record]) in ([True], [False])
        assert verdict.record.event_id in store.event_ids()
    finally:
        store.close()


@given(raw=st.binary(max_size=400))
def test_any_bytes_on_any_kind_give_a_verdict(raw: bytes) -> None:
    signer = Signer(SigningKey(b"\x01" * 32))
    ingest = _ingest(signer)
    for what in ("event/face", "status", "health"):
        verdict = ingest.handle(f"faceonly/v1/dev/t1/{what}", raw, time.time())
        assert verdict is None or isinstance(verdict, Quarantined)
