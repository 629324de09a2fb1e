"""The signed, encrypted, versioned gallery: snapshot and delta, refusals with reasons, chunked transfer."""

from __future__ import annotations

import contextlib
import json
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from device.contracts import ModelRef
from device.identity import gallery as gal
from device.identity import operator as op
from device.identity.store import GalleryStore, open_box
from device.identity.transfer import Incoming, TransferError, chunk_proofs, transfer_id
from device.privacy.signing import Signer
from device.vision.embed import l2_normalise

EMBEDDER = ModelRef("embedder", "embedder_dlib_resnet_int8.tflite", "ab" * 32)
OTHER_EMBEDDER = ModelRef("embedder", "other.tflite", "cd" * 32)
SIGNER = Signer(SigningKey(b"\x01" * 32))
GALLERY_KEY = SIGNER.public_key
STRANGER = Signer(SigningKey(b"\x02" * 32))


def _subject(sid: str, k: int = 1, seed: int = 0, name: str | None = None) -> gal.Subject:
    rng = np.random.default_rng(seed)
    return gal.check_subject(sid, name, l2_normalise(rng.normal(size=(k, gal.DIM))))


def _apply(update: op.UpdateFile, current: gal.Gallery | None, embedder: ModelRef = EMBEDDER):
    manifest = gal.check_manifest(update.manifest, GALLERY_KEY, embedder)
    return gal.apply(manifest, update.body, current, embedder)


def _v1() -> tuple[op.UpdateFile, gal.Gallery]:
    snap = op.snapshot(SIGNER, [_subject("bob", 2, 1), _subject("ann", 1, 2, "Ann")], 1, EMBEDDER)
    return snap, _apply(snap, None)


def test_snapshot_then_delta_gives_the_signed_result():
    snap, v1 = _v1()
    assert [s.id for s in v1.subjects] == ["ann", "bob"] and v1.version == 1
    assert v1.subject("ann").display_name == "Ann" and v1.summary()["templates"] == 3
    d = op.delta(SIGNER, snap, EMBEDDER, add=(_subject("cy", 1, 3),), remove=("bob",))
    v2 = _apply(d, v1)
    assert [s.id for s in v2.subjects] == ["ann", "cy"] and v2.version == 2
    assert d.manifest["result_sha256"] == v2.sha256


def test_unsigned_update_is_refused():
    snap, _ = _v1()
    unsigned = {k: v for k, v in snap.manifest.items() if k != "signature"}
    with pytest.raises(gal.GalleryRefused) as err:
        gal.check_manifest(unsigned, GALLERY_KEY, EMBEDDER)
    assert err.value.reason == "unsigned"


def test_forged_update_is_refused():
    forged = op.snapshot(STRANGER, [_subject("eve")], 9, EMBEDDER)
    with pytest.raises(gal.GalleryRefused) as err:
        gal.check_manifest(forged.manifest, GALLERY_KEY, EMBEDDER)
    assert err.value.reason == "forged"
    snap, _ = _v1()
    altered = dict(snap.manifest, version=5)
    with pytest.raises(gal.GalleryRefused, match="forged"):
        gal.check_manifest(altered, GALLERY_KEY, EMBEDDER)


def test_body_swapped_under_a_good_manifest_is_refused():
    snap, _ = _v1()
    other = gal.encode_body([_subject("eve")])
    manifest = gal.check_manifest(snap.manifest, GALLERY_KEY, EMBEDDER)
    with pytest.raises(gal.GalleryRefused) as err:
        gal.apply(manifest, other, None, EMBEDDER)
    assert err.value.reason == "forged"


def test_not_newer_update_is_refused():
    snap, v1 = _v1()
    with pytest.raises(gal.GalleryRefused) as err:
        _apply(snap, v1)  # replayed
    assert err.value.reason == "not_newer"
    older = op.snapshot(SIGNER, [_subject("ann")], 1, EMBEDDER)
    with pytest.raises(gal.GalleryRefused, match="not_newer"):
        _apply(older, v1)


def test_delta_on_the_wrong_base_is_refused():
    snap, v1 = _v1()
    d2 = op.delta(SIGNER, snap, EMBEDDER, add=(_subject("cy", 1, 3),))
    v2 = _apply(d2, v1)
    stale = op.delta(SIGNER, snap, EMBEDDER, add=(_subject("dee", 1, 4),), version=3)  # made from v1, not v2
    with pytest.raises(gal.GalleryRefused) as err:
        _apply(stale, v2)
    assert err.value.reason == "wrong_base"
    with pytest.raises(gal.GalleryRefused, match="wrong_base"):
        _apply(d2, None)  # a delta with nothing to apply it to


def test_delta_with_same_version_numbers_but_other_base_content_is_refused():
    _snap, v1 = _v1()
    other_v1 = op.snapshot(SIGNER, [_subject("zed")], 1, EMBEDDER)
    d = op.delta(SIGNER, other_v1, EMBEDDER, add=(_subject("cy"),))
    with pytest.raises(gal.GalleryRefused, match="wrong_base"):
        _apply(d, v1)


def test_other_embedder_is_refused():
    snap = op.snapshot(SIGNER, [_subject("ann")], 1, OTHER_EMBEDDER)
    with pytest.raises(gal.GalleryRefused) as err:
        gal.check_manifest(snap.manifest, GALLERY_KEY, EMBEDDER)
    assert err.value.reason == "other_embedder"


@pytest.mark.parametrize(
    "sid,templates,match",
    [
        ("../etc", np.ones((1, 128)) / np.sqrt(128), "must match"),
        ("ann", np.ones((1, 127)), "templates"),
        ("ann", np.full((1, 128), np.nan), "finite"),
        ("ann", np.ones((1, 128)), "normalised"),
        ("ann", np.ones((17, 128)) / np.sqrt(128), "templates"),
    ],
)
def test_bad_subjects_are_refused(sid, templates, match):
    with pytest.raises(ValueError, match=match):
        gal.check_subject(sid, None, templates)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_decode_body_never_crashes_on_garbage(data):
    for blob in (data, gal.MAGIC + data):
        with contextlib.suppress(ValueError):
            gal.decode_body(blob)


def test_store_is_encrypted_0600_and_verified_at_load(tmp_path):
    snap, v1 = _v1()
    box = open_box(tmp_path / "gallery.key")
    store = GalleryStore(tmp_path / "gallery.sealed", box)
    store.save(snap.manifest, v1)
    assert stat.S_IMODE(os.stat(tmp_path / "gallery.sealed").st_mode) == 0o600
    raw = (tmp_path / "gallery.sealed").read_bytes()
    assert b"ann" not in raw and snap.result[-512:] not in raw
    loaded, manifest = store.load(GALLERY_KEY, EMBEDDER)
    assert loaded.sha256 == v1.sha256 and manifest == snap.manifest
    other = GalleryStore(tmp_path / "gallery.sealed", SecretBox(b"\x03" * 32))
    with pytest.raises(gal.GalleryRefused, match="damaged"):
        other.load(GALLERY_KEY, EMBEDDER)
    with pytest.raises(gal.GalleryRefused, match="forged"):
        store.load(STRANGER.public_key, EMBEDDER)
    assert GalleryStore(tmp_path / "none", box).load(GALLERY_KEY, EMBEDDER) is None


def test_update_file_round_trip_and_keygen(tmp_path):
    snap, _ = _v1()
    op.write_update(tmp_path / "g.fog", snap)
    assert op.read_update(tmp_path / "g.fog") == snap
    pub, _public = op.keygen(tmp_path / "gallery.key")
    assert op.read_public_key(pub) == bytes(op.load_gallery_signer(tmp_path / "gallery.key").public_key)
    with pytest.raises(FileExistsError):
        op.keygen(tmp_path / "gallery.key")


def test_chunked_transfer_resumes_in_any_order_after_a_restart(tmp_path):
    subjects = [_subject(f"s{i:04d}", 1, i) for i in range(300)]
    snap = op.snapshot(SIGNER, subjects, 1, EMBEDDER, chunk=16 * 1024)
    manifest = gal.check_manifest(snap.manifest, GALLERY_KEY, EMBEDDER)
    box = SecretBox(b"\x04" * 32)
    chunks = [snap.body[i : i + 16 * 1024] for i in range(0, len(snap.body), 16 * 1024)]
    proofs = chunk_proofs(manifest, snap.body)
    assert manifest["body"]["chunk_count"] == len(chunks) and "chunks" not in manifest["body"]
    incoming = Incoming(tmp_path / "incoming", box)
    missing = incoming.begin(manifest)
    assert missing == list(range(len(chunks))) and len(chunks) > 5
    tid = transfer_id(manifest)
    for i in missing[::2]:
        incoming.put(tid, i, chunks[i], proofs[i])
    with pytest.raises(TransferError, match="hash or proof"):
        incoming.put(tid, 1, chunks[0], proofs[0])  # another chunk with its own (valid) proof
    with pytest.raises(TransferError, match="hash or proof"):
        incoming.put(tid, 1, chunks[1], proofs[3])
    with pytest.raises(TransferError, match="hash or proof"):
        incoming.put(tid, 1, chunks[1])  # no proof
    with pytest.raises(TransferError, match="no such transfer"):
        incoming.put("0" * 32, 1, chunks[1], proofs[1])
    # A power cut tore one chunk (they are written without fsync) and left a temp file behind.
    stored = tmp_path / "incoming" / tid
    (stored / "000002.chunk").write_bytes((stored / "000002.chunk").read_bytes()[:-7])
    (stored / ".000004.chunk.abc.tmp").write_bytes(b"partial")
    resumed = Incoming(tmp_path / "incoming", box)  # the terminal restarted
    left = resumed.begin(manifest)
    assert left == sorted([2, *list(range(len(chunks)))[1::2]]) and resumed.missing_count == len(left)
    assert sorted(p.name for p in stored.iterdir())[:2] == ["000000.chunk", "000004.chunk"]
    for i in reversed(left):
        resumed.put(tid, i, chunks[i], proofs[i])
    assert resumed.missing() == [] and resumed.body() == snap.body
    v1 = gal.apply(manifest, resumed.body(), None, EMBEDDER)
    assert v1.count == 300


def test_purge_erases_templates_yet_the_gallery_verifies_and_the_next_delta_applies(tmp_path):
    snap, v1 = _v1()
    store = GalleryStore(tmp_path / "gallery.sealed", open_box(tmp_path / "gallery.key"))
    purged = v1.without("bob")
    assert [s.id for s in purged.subjects] == ["ann"] and purged.sha256 == v1.sha256
    store.save(snap.manifest, purged)
    loaded, _ = store.load(GALLERY_KEY, EMBEDDER)
    assert [s.id for s in loaded.subjects] == ["ann"] and loaded.purged[0][0] == "bob"
    d = op.delta(SIGNER, snap, EMBEDDER, remove=("bob",))  # the backend learns of the purge
    v2 = _apply(d, loaded)
    assert [s.id for s in v2.subjects] == ["ann"] and v2.purged == ()


def test_the_manifest_stays_small_however_many_chunks(tmp_path):
    """100,000 subjects' worth of chunks: the signed manifest does not grow with them (issue 19 item 7)."""
    body = bytes(53_000_000 // 64)  # the body's length is what the manifest describes
    small = gal.make_manifest(SIGNER, "snapshot", 1, EMBEDDER, body[:40_000], 32 * 1024, None, "0" * 64)
    large = gal.make_manifest(SIGNER, "snapshot", 1, EMBEDDER, body, 512, None, "0" * 64)
    assert large["body"]["chunk_count"] == 1618 and len(json.dumps(large)) - len(json.dumps(small)) < 16
    assert gal.check_manifest(large, GALLERY_KEY, EMBEDDER) == large


def test_a_schema_1_manifest_still_loads_and_transfers(tmp_path):
    """Galleries stored and update files made before chunk_root list every chunk's sha256 instead."""
    subjects = [_subject(f"s{i:04d}", 1, i) for i in range(60)]
    body = gal.encode_body(subjects)
    size = 4096
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    old = SIGNER.sign(
        {
            "schema": 1,
            "kind": gal.KIND,
            "type": "snapshot",
            "version": 3,
            "embedder": {"name": EMBEDDER.name, "file": EMBEDDER.file, "sha256": EMBEDDER.sha256},
            "body": {
                "size": len(body),
                "sha256": gal.sha256_hex(body),
                "chunk_size": size,
                "chunks": [gal.sha256_hex(c) for c in chunks],
            },
            "result_sha256": gal.gallery_digest(subjects),
        }
    )
    manifest = gal.check_manifest(old, GALLERY_KEY, EMBEDDER)
    incoming = Incoming(tmp_path / "incoming", SecretBox(b"\x04" * 32))
    assert incoming.begin(manifest) == list(range(len(chunks)))
    tid = transfer_id(manifest)
    with pytest.raises(TransferError):
        incoming.put(tid, 0, chunks[0], ["00" * 32])  # schema 1 chunks carry no proof
    for i, (chunk, proof) in enumerate(zip(chunks, chunk_proofs(manifest, body), strict=True)):
        incoming.put(tid, i, chunk, proof)
    store = GalleryStore(tmp_path / "gallery.sealed", open_box(tmp_path / "gallery.key"))
    store.save(manifest, gal.apply(manifest, incoming.body(), None, EMBEDDER))
    loaded, kept = store.load(GALLERY_KEY, EMBEDDER)
    assert loaded.count == 60 and kept["schema"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"schema": 3},
        {"schema": True},
        {"body": {"chunk_count": 2}},
        {"body": {"chunk_root": "XYZ"}},
        {"body": {"chunk_count": True}},
    ],
)
def test_a_manifest_with_a_bad_chunk_description_is_refused(change):
    body = gal.encode_body([_subject("ann", 1, 1)])
    fields = {
        "schema": 2,
        "kind": gal.KIND,
        "type": "snapshot",
        "version": 1,
        "embedder": {"name": EMBEDDER.name, "file": EMBEDDER.file, "sha256": EMBEDDER.sha256},
        "body": {
            "size": len(body),
            "sha256": gal.sha256_hex(body),
            "chunk_size": len(body),
            "chunk_count": 1,
            "chunk_root": "ab" * 32,
        },
        "result_sha256": "0" * 64,
    }
    assert gal.check_manifest(SIGNER.sign(fields), GALLERY_KEY, EMBEDDER)
    for key, value in change.items():
        fields[key] = {**fields[key], **value} if isinstance(value, dict) else value
    with pytest.raises(gal.GalleryRefused) as err:
        gal.check_manifest(SIGNER.sign(fields), GALLERY_KEY, EMBEDDER)
    assert err.value.reason == "malformed"
