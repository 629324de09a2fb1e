"""The identity component as the service loop drives it: 1:N per observation, feedback, gate, enrolment,
gallery commands with refusals (gallery unchanged), purge."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from nacl.signing import SigningKey

from device.config.gate import GateConfig
from device.contracts import FaceObservation
from device.identity import gallery as gal
from device.identity import operator as op
from device.identity.component import REFUSED, IdentityComponent
from device.identity.gate import GpioGate
from device.identity.runtime import Identity
from device.identity.thresholds import CurveSet, ThresholdCurve
from device.identity.transfer import chunk_proofs
from device.privacy.signing import Signer
from device.transport.commands import CommandError, CommandPlane, Deferred
from tests.terminal_keys import TerminalKeys
from tests.test_identity_gallery import EMBEDDER, SIGNER, _subject

CURVE = CurveSet.single(ThresholdCurve.from_points([[1e-1, 0.5], [1e-6, 0.6]]))
STRANGER = Signer(SigningKey(b"\x09" * 32))


def _obs(tid: int, emb, decision: str = "accepted") -> FaceObservation:
    return FaceObservation(tid, decision, 0.0, 1.0, 1.0, (0, 0, 1, 1), {}, {"planarity": 0.1}, (), emb)  # type: ignore[arg-type]


def _handlers(comp: IdentityComponent) -> dict:
    plane = CommandPlane("faceonly/v1/dev/t/cmd/res", 65536)
    comp.register(plane)
    return plane.handlers


def test_only_gallery_list_may_come_unsigned(rig):
    plane = CommandPlane("faceonly/v1/dev/t/cmd/res", 65536)
    rig[0].register(plane)
    assert plane.read_only == {"gallery.list"}
    assert {"gallery.sync", "gallery.chunk", "gallery.add", "gallery.remove", "subject.purge"} <= set(
        plane.handlers
    )


@pytest.fixture
def rig(tmp_path):
    identity = Identity(EMBEDDER, CURVE, SIGNER.public_key, tmp_path / "g.sealed", tmp_path / "g.key", 1e-3)
    snap = op.snapshot(SIGNER, [_subject("ann", 1, 1, "Ann"), _subject("bob", 1, 2)], 1, EMBEDDER)
    identity.apply_update(snap.manifest, snap.body)
    factory = MockFactory()
    gate = GpioGate(GateConfig(kind="gpio", pulse_s=0.05), pin_factory=factory)
    prompts, replies, purged = [], [], []
    comp = IdentityComponent(
        identity,
        gate,
        prompts.append,
        lambda h, r: replies.append((h, r)),
        TerminalKeys(lambda obs: {"embedding": "x"}),  # type: ignore[arg-type]
        lambda s: purged.append(s) or 2,
    )
    yield comp, snap, prompts, replies, factory.pin(17)
    gate.close()


def test_match_opens_once_and_welcomes_unknown_does_not(rig):
    comp, _, prompts, _, pin = rig
    assert not pin.state
    ann = comp.identity.gallery.subject("ann").templates[0]
    stranger = np.ones(128, np.float32) / np.sqrt(128)
    (m,) = comp.observe([_obs(1, ann)])
    assert m.subject == "ann" and m.gallery_version == 1
    (u,) = comp.observe([_obs(2, stranger)])
    assert u.subject is None
    assert comp.observe([_obs(3, None, "rejected")]) == [None]
    assert comp.counts["gate_opened"] == 1 and comp.gate.opened == 1
    assert sum(1 for a, b in zip(pin.states, pin.states[1:], strict=False) if not a.state and b.state) == 1
    assert [(p.code, p.subject) for p in prompts] == [
        ("result.welcome", "ann"),
        ("result.not_recognised", None),
        ("result.rejected", None),
    ]
    # The name stays on the terminal: the screen asks for it, no prompt carries it.
    assert comp.display_name("ann") == "Ann" and comp.display_name("nobody") is None
    assert all("Ann" not in repr(p.to_dict()) for p in prompts)


def test_enrolment_replies_once_with_the_template_and_times_out(rig):
    comp, _, prompts, replies, _ = rig
    comp.start_enrolment({"subject": "cy", "timeout_s": 5}, "h1")
    with pytest.raises(CommandError, match="in progress"):
        comp.start_enrolment({"subject": "dee"}, "h2")
    comp.observe([_obs(1, np.ones(128, np.float32) / np.sqrt(128))])
    ((handle, result),) = replies
    assert handle == "h1" and result["subject"] == "cy" and result["biometric"] == {"embedding": "x"}
    assert [(p.code, p.subject) for p in prompts] == [("enrol.started", "cy"), ("enrol.done", "cy")]
    assert comp.identity.gallery.subject("cy") is None  # the terminal never changes its own gallery
    now = [0.0]
    comp._clock = lambda: now[0]
    comp.start_enrolment({"subject": "cy", "timeout_s": 1}, "h3")
    now[0] = 2.0
    comp.tick()
    assert replies[-1][0] == "h3" and isinstance(replies[-1][1], CommandError)
    assert replies[-1][1].details == {"reason": "timeout"}
    assert (prompts[-1].code, prompts[-1].reason) == ("enrol.failed", "enrol.timeout")


def test_forged_inline_delta_is_refused_and_the_gallery_is_unchanged(rig):
    comp, snap, _, _, _ = rig
    before = comp.identity.summary()
    forged = op.delta(STRANGER, snap, EMBEDDER, add=(_subject("eve", 1, 9),))
    with pytest.raises(CommandError) as err:
        _handlers(comp)["gallery.add"](
            {"manifest": forged.manifest, "body": comp._protector.seal(forged.body)}
        )
    assert err.value.code == REFUSED and err.value.details["reason"] == "forged"
    assert comp.identity.summary() == before
    good = op.delta(SIGNER, snap, EMBEDDER, add=(_subject("eve", 1, 9),))
    with pytest.raises(CommandError, match="may only remove"):
        _handlers(comp)["gallery.remove"](
            {"manifest": good.manifest, "body": comp._protector.seal(good.body)}
        )
    out = _handlers(comp)["gallery.add"]({"manifest": good.manifest, "body": comp._protector.seal(good.body)})
    assert out["gallery"]["version"] == 2 and out["gallery"]["count"] == 3


def test_list_and_purge(rig):
    comp, _, _, _, _ = rig
    listed = _handlers(comp)["gallery.list"]({"ids": True})
    assert listed["ids"] == ["ann", "bob"] and listed["threshold"]["comparisons"] == 2
    out = _handlers(comp)["subject.purge"]({"subject": "ann"})
    assert out == {**out, "templates_erased": 1, "events_erased": 2}
    assert _handlers(comp)["gallery.list"]({"ids": True})["ids"] == ["bob"]
    with pytest.raises(CommandError):
        _handlers(comp)["subject.purge"]({"subject": "../x"})


def test_without_a_threshold_curve_every_face_is_unknown_and_status_says_why(tmp_path):
    identity = Identity(EMBEDDER, None, SIGNER.public_key, tmp_path / "g.sealed", tmp_path / "g.key", 1e-3)
    snap = op.snapshot(SIGNER, [_subject("ann", 1, 1)], 1, EMBEDDER)
    identity.apply_update(snap.manifest, snap.body)
    match = identity.identify(identity.gallery.subject("ann").templates[0])
    assert match.subject is None  # fail closed: no calibrated threshold, no match
    assert "threshold curve" in identity.summary()["problem"] and identity.summary()["threshold"] is None


def test_a_damaged_gallery_file_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "g.sealed"
    path.write_bytes(b"not a sealed gallery")
    identity = Identity(EMBEDDER, CURVE, SIGNER.public_key, path, tmp_path / "g.key", 1e-3)
    assert identity.gallery is None and "damaged" in identity.summary()["problem"]
    assert path.read_bytes() == b"not a sealed gallery"


def _send_all_but_last(comp: IdentityComponent, handlers: dict, update) -> dict:
    started = handlers["gallery.sync"]({"manifest": update.manifest})
    size = update.manifest["body"]["chunk_size"]
    proofs = chunk_proofs(update.manifest, update.body)

    def args(i: int) -> dict:
        data = comp._protector.seal(update.body[i * size : (i + 1) * size])  # type: ignore[attr-defined]
        return {"transfer": started["transfer"], "index": i, "data": data, "proof": proofs[i]}

    for i in started["missing"][:-1]:
        assert handlers["gallery.chunk"](args(i))["missing_count"] >= 1
    return args(started["missing"][-1])


def _tick_until(comp: IdentityComponent, replies: list, handle: str) -> object:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        comp.tick()
        for h, outcome in replies:
            if h == handle:
                return outcome
        time.sleep(0.01)
    raise AssertionError("the applying update never answered")


def test_the_last_chunk_applies_on_a_worker_the_loop_matching_the_old_gallery_meanwhile(rig):
    comp, _, _, replies, _ = rig
    handlers = _handlers(comp)
    v2 = op.snapshot(SIGNER, [_subject(f"s{i:03d}", 1, i) for i in range(40)], 2, EMBEDDER, chunk=1024)
    last = _send_all_but_last(comp, handlers, v2)
    release, real_save = threading.Event(), comp.identity.store.save
    comp.identity.store.save = lambda *a: (release.wait(10), real_save(*a))[1]
    assert isinstance(handlers["gallery.chunk"](last), Deferred)
    comp.attach_reply("h-apply")
    try:
        assert comp.status()["applying_update"]
        for name, args in (
            ("gallery.sync", {"manifest": v2.manifest}),
            ("subject.purge", {"subject": "ann"}),
        ):
            with pytest.raises(CommandError) as err:
                handlers[name](args)
            assert err.value.code == "busy"
        (m,) = comp.observe([_obs(1, comp.identity.gallery.subject("ann").templates[0])])
        assert m.subject == "ann" and m.gallery_version == 1  # frames go on against the gallery it has
        comp.tick()
        assert replies == []
    finally:
        release.set()
    outcome = _tick_until(comp, replies, "h-apply")
    assert (
        outcome["gallery"]["version"] == 2
        and outcome["gallery"]["count"] == 40
        and outcome["missing_count"] == 0
    )
    assert comp.identity.gallery.version == 2 and not comp.status()["applying_update"]
    assert handlers["gallery.list"]({})["version"] == 2


def test_an_update_refused_on_the_worker_is_answered_and_changes_nothing(rig):
    comp, _, _, replies, _ = rig
    handlers = _handlers(comp)
    subjects = [_subject(f"s{i:03d}", 1, i) for i in range(30)]
    body = gal.encode_body(subjects)
    wrong = gal.make_manifest(
        SIGNER, "snapshot", 2, EMBEDDER, body, 1024, None, "0" * 64
    )  # signed, wrong result
    before = comp.identity.summary()
    last = _send_all_but_last(comp, handlers, op.UpdateFile(wrong, body, body))
    assert isinstance(handlers["gallery.chunk"](last), Deferred)
    comp.attach_reply("h-refused")
    outcome = _tick_until(comp, replies, "h-refused")
    assert isinstance(outcome, CommandError) and outcome.code == REFUSED
    assert outcome.details["reason"] == "wrong_base" and comp.identity.summary() == before


def test_gallery_data_and_names_come_sealed_to_this_terminal_or_not_at_all(rig):
    """Display names and templates never cross the broker readable: chunk data, inline bodies and the enrolment's
    name are sealed to the terminal's key; anything in the clear, or sealed to another terminal, is refused and
    changes nothing."""
    comp, snap, _, _, _ = rig
    handlers = _handlers(comp)
    before = comp.identity.summary()
    good = op.delta(SIGNER, snap, EMBEDDER, add=(_subject("eve", 1, 9, "Eve Example"),))
    other = TerminalKeys()
    for body in (base64.b64encode(good.body).decode(), other.seal(good.body)):
        with pytest.raises(CommandError) as err:
            handlers["gallery.add"]({"manifest": good.manifest, "body": body})
        assert err.value.details["reason"] == "not_sealed"
    v2 = op.snapshot(SIGNER, [_subject(f"s{i:03d}", 1, i) for i in range(20)], 2, EMBEDDER, chunk=1024)
    started = handlers["gallery.sync"]({"manifest": v2.manifest})
    clear = {"transfer": started["transfer"], "index": 0, "data": base64.b64encode(v2.body[:1024]).decode()}
    with pytest.raises(CommandError) as err:
        handlers["gallery.chunk"]({**clear, "proof": chunk_proofs(v2.manifest, v2.body)[0]})
    assert err.value.details["reason"] == "not_sealed"
    assert comp.identity.summary() == before
    with pytest.raises(CommandError, match="sealed"):
        comp.start_enrolment({"subject": "cy", "display_name": "Cy Clear", "timeout_s": 5}, "h1")
    comp.start_enrolment(
        {"subject": "cy", "display_name_sealed": comp._protector.seal("Cy Séance".encode()), "timeout_s": 5},
        "h2",
    )
    assert comp.display_name("cy") == "Cy Séance"  # for the door screen only
