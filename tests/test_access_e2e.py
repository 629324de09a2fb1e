"""Door modes end to end: a real mosquitto, the real terminal (its Service in this process, with its door
screen), real faces (scikit-image's astronaut enrolled as Ann by `gallery build`; an LFW photo as someone
else), the keypad pressed through the screen's POST /keypad, a badge through the reader's stand-in, QR codes
held up to the camera, and what reaches the broker checked against the schemas.

- credential+face: number and PIN, then Ann's face: granted (1:1); Ann's badge, then another face: refused;
- credential: Bo, who has no face template, by badge; no face is processed at all; anti-passback at a door
  that goes both ways (in/in refused, in/out/in passes, still refused after a restart); a visitor's QR pass
  within its window, replayed, expired; a person outside their schedule: refused, the gate stays shut;
- face|credential and face: the face by 1:N; a stranger is pointed at a real alternative; the policy pushed
  with `faceonly access push`.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from nacl.signing import SigningKey

from device.cli import main
from device.gate.check import DecisionCheck
from device.identity.operator import load_gallery_signer, write_update
from device.privacy.signing import load_signer
from device.screen.words import words
from tests.access_parts import signed, source, visitor_pass, write_credential_key
from tests.access_rig import (
    TID,
    Collector,
    DoorTerminal,
    door_config,
    framed,
    install_policy,
    qr_shown,
    wait,
)
from tests.api_schemas import errors
from tests.broker import Broker
from tests.gate_rig import astronaut, build_gallery
from tests.vision_helpers import model_store

STRANGER = "verification/lfw/lfw-deepfunneled/Abdul_Rahman/Abdul_Rahman_0001.jpg"
PASS_KEY = SigningKey(bytes(range(3, 35)))
SECRETS = ("2468", "1357", "9999", "0012345678", "12345678", "77", "4242", "6161")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Ann enrolled from the astronaut photo (display name Ann Astro); the gallery and credential keys."""
    model_store()
    tmp = tmp_path_factory.mktemp("site")
    photos = tmp / "photos" / "ann"
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / "astronaut.png"), astronaut())
    (photos / "display_name.txt").write_text("Ann Astro")
    fog, pub = build_gallery(tmp, tmp / "photos")
    return {
        "fog": fog,
        "pub": pub,
        "signer": load_gallery_signer(tmp / "gallery.key"),
        "credential_key": write_credential_key(tmp / "credential.key"),
    }


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "mq") as b:
        yield b


def start(
    tmp: Path, broker: Broker, site: dict, door: str, policy: dict | None
) -> tuple[DoorTerminal, Collector]:
    from tests.gate_rig import install_gallery

    cfg = door_config(tmp, broker.url, site["pub"], door, site["credential_key"])
    install_gallery(cfg, site["fog"])
    if policy is not None:
        install_policy(cfg, signed(policy, site["signer"]))
    collector = Collector(broker.url)
    terminal = DoorTerminal(cfg)
    assert wait(lambda: terminal.service.link.connected, 20)
    birth = collector.next("status")
    assert errors(birth) == [] and birth["access"]["door"] == door  # the door's policy, in the signed birth
    return terminal, collector


def decision(collector: Collector, timeout: float = 40.0) -> dict:
    event = collector.next("event/access", timeout)
    assert errors(event) == [], errors(event)
    return event["access"]


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() if k != "signature" for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def assert_nothing_secret(collector: Collector) -> None:
    """No PIN, badge number or display name in anything published: as a value, or inside one (the digits of
    a PIN may turn up by chance inside a signature or an id, so those are compared whole)."""
    for topic, raw in collector.seen:
        for name in ("Ann Astro", "Bo Badge"):
            assert name.encode() not in raw, f"{name!r} on {topic}"
        try:
            strings = _strings(json.loads(raw))
        except ValueError:
            continue
        for secret in SECRETS:
            assert secret not in strings, f"{secret!r} on {topic}"


def gate_check(terminal: DoorTerminal, door: str) -> DecisionCheck:
    signer, _ = load_signer(Path(terminal.cfg.service.state_dir) / "signing.key")
    return DecisionCheck(TID, door, signer.public_key)


@pytest.mark.slow
def test_credential_then_face(tmp_path, broker, site, shared_data) -> None:
    policy = source(pass_key=PASS_KEY)
    policy["doors"]["main"]["anti_passback_s"] = (
        0  # two attempts in a row here; anti-passback has its own test
    )
    terminal, collector = start(tmp_path, broker, site, "main", policy)
    stranger = framed(cv2.imread(str(shared_data / STRANGER)))
    try:
        assert not terminal.access.wants_faces()
        terminal.type_pin("4242", "2468")
        assert wait(terminal.access.wants_faces, 10), "the PIN was not accepted"
        assert wait(lambda: terminal.screen.state.view.screen in ("look", "positioning"), 5)
        terminal.scene.show(framed(astronaut()))
        granted = decision(collector)
        assert (granted["decision"], granted["mode"], granted["direction"]) == (
            "granted",
            "credential+face",
            "in",
        )
        assert granted["factors"] == {"pin": "passed", "face": "passed"} and granted["credential"] == "pin"
        assert granted["face"]["check"] == "claim" and granted["face"]["score"] > granted["face"]["threshold"]
        assert granted["subject"] == "ann" and granted["gate"] == "opened" and granted["attendance"]
        gate = collector.next("gate")
        assert gate["mode"] == "credential+face" and gate["factors"] == ["pin", "face"]
        assert gate_check(terminal, "main").check(json.dumps(gate).encode()).opens
        assert wait(lambda: terminal.screen.state.view.outcome == "result.welcome", 5)
        assert terminal.screen.state.view.name == "Ann Astro"  # on the screen only
        terminal.scene.show(None)
        assert wait(lambda: not terminal.access.wants_faces(), 10)
        time.sleep(1.5)  # her track ends
        terminal.swipe("0012345678")  # Ann's badge, in someone else's hand
        assert wait(terminal.access.wants_faces, 10), "the badge was not taken"
        terminal.scene.show(stranger)
        refused = decision(collector)
        assert (refused["decision"], refused["reason"]["code"]) == ("refused", "access.face_mismatch")
        assert refused["factors"] == {"badge": "passed", "face": "failed"} and refused["gate"] == "shut"
        assert refused["face"]["score"] < refused["face"]["threshold"]
        late = [t for t, _ in collector.drain(2.0) if t.endswith("/gate")]
        assert late == []  # the gate stayed shut
        face_events = [t for t, _ in collector.seen if t.endswith("/event/face")]
        assert len(face_events) == 2  # one face per claim: none before a credential
    finally:
        terminal.stop()
        collector.close()
    assert_nothing_secret(collector)


@pytest.mark.slow
def test_credential_mode_passes_anti_passback_and_schedules(tmp_path, broker, site) -> None:
    policy = source(pass_key=PASS_KEY)
    policy["schedules"]["office"]["windows"] = []  # Cy's group: never open, for this test
    terminal, collector = start(tmp_path, broker, site, "side", policy)

    def swipe(way: str | None, code: str = "77") -> dict:
        if way is not None:
            terminal.press(way)
            assert wait(lambda: terminal.screen.state.view.chosen == way, 5)
        terminal.swipe(code)
        return decision(collector)

    try:
        terminal.scene.show(framed(astronaut()))  # a face in view: this door never looks at it
        first = swipe("in")
        assert (first["decision"], first["subject"], first["direction"]) == ("granted", "bo", "in")
        assert first["factors"] == {"badge": "passed"} and first["face"] is None
        gate = collector.next("gate")
        assert (gate["mode"], gate["factors"], gate["score"]) == ("credential", ["badge"], None)
        assert gate_check(terminal, "side").check(json.dumps(gate).encode()).opens
        again = swipe("in")
        assert (again["decision"], again["reason"]["code"]) == ("refused", "access.anti_passback")
        assert swipe("out")["decision"] == "granted"
        assert swipe("in")["decision"] == "granted"  # in / out / in
        terminal.scene.show(None)

        now = time.time()
        text = visitor_pass(PASS_KEY, now)
        terminal.scene.show(qr_shown(text))
        visitor = decision(collector)
        assert (visitor["decision"], visitor["credential"], visitor["subject"]) == (
            "granted",
            "pass",
            "visitor-17",
        )
        assert visitor["pass_id"] == "visit-000001" and visitor["factors"] == {"pass": "passed"}
        terminal.scene.show(None)
        time.sleep(5.5)  # the code is put away; shown again later it is a new presentation
        terminal.scene.show(qr_shown(text))
        replayed = decision(collector)
        assert replayed["reason"]["code"] == "access.pass_replayed" and replayed["gate"] == "shut"
        terminal.scene.show(qr_shown(visitor_pass(PASS_KEY, now - 7200, id="visit-000002")))
        assert decision(collector)["reason"]["code"] == "access.pass_expired"
        terminal.scene.show(None)

        terminal.type_pin("6161", "9999")  # Cy, outside her schedule
        outside = decision(collector)
        assert (outside["decision"], outside["reason"]["code"]) == ("refused", "access.outside_schedule")
        assert outside["reason"]["text"].startswith("outside schedule") and outside["gate"] == "shut"
        assert wait(lambda: terminal.screen.state.view.reason == "access.outside_schedule", 5)
        gates = [t for t, _ in collector.drain(2.0) if t.endswith("/gate")]
        assert gates == []
        assert not [t for t, _ in collector.seen if t.endswith("/event/face")]  # no face processed at all
        status = terminal.access.status()
        assert status["door_policy"]["mode"] == "credential" and status["counts"]["granted"] == 4
    finally:
        terminal.stop()
    # A restart: Bo is still in.
    terminal = DoorTerminal(terminal.cfg)
    try:
        assert wait(lambda: terminal.service.link.connected, 20)
        assert swipe("in")["reason"]["code"] == "access.anti_passback"
        terminal.scene.show(qr_shown(text))
        assert decision(collector)["reason"]["code"] == "access.pass_replayed"  # used up, on disk
    finally:
        terminal.stop()
        collector.close()
    assert_nothing_secret(collector)


@pytest.mark.slow
def test_face_modes_and_a_pushed_policy(tmp_path, broker, site, shared_data) -> None:
    from tests.control_keys import CommandKey

    key = CommandKey.generate(tmp_path / "keys")
    cfg_dir = tmp_path / "lobby"
    terminal, collector = start(cfg_dir, broker, site, "lobby", None)
    terminal.stop()
    cfg = terminal.cfg.model_copy(
        update={
            "control": terminal.cfg.control.model_copy(update={"command_public_key_file": key.public_file})
        }
    )
    terminal = DoorTerminal(cfg)
    try:
        assert wait(lambda: terminal.service.link.connected, 20)
        assert terminal.access.summary()["loaded"] is False
        update = signed(source(pass_key=PASS_KEY), site["signer"], version=5)
        write_update(tmp_path / "doors.foa", update)
        signer, _ = load_signer(Path(cfg.service.state_dir) / "signing.key")
        pushed = main(
            ["access", "push", "--broker", broker.url, "--id", TID, "--sign-key", str(key.private_file),
             "--terminal-key", base64.b64encode(signer.public_key).decode(), "--file", str(tmp_path / "doors.foa")]
        )  # fmt: skip
        assert pushed == 0 and terminal.access.version == 5
        assert wait(lambda: terminal.screen.state.view.mode == "face|credential", 5)
        terminal.scene.show(framed(astronaut()))
        by_face = decision(collector)
        assert (by_face["decision"], by_face["mode"], by_face["factors"]) == (
            "granted",
            "face|credential",
            {"face": "passed"},
        )
        assert by_face["face"]["check"] == "search" and by_face["direction"] == "out"
        terminal.scene.show(None)
        time.sleep(1.5)
        terminal.scene.show(framed(cv2.imread(str(shared_data / STRANGER))))
        stranger = decision(collector)
        assert stranger["reason"]["code"] == "access.not_recognised"
        assert wait(lambda: terminal.screen.state.view.outcome == "result.not_recognised", 5)
        view = terminal.screen.state.view
        said = words(view, terminal.screen.catalogue, terminal.cfg.screen.alternative).headline
        assert said == "Not recognised — please use your badge, your QR code or the keypad"
    finally:
        terminal.stop()
    # The same terminal at the turnstile (mode face): credentials are refused and it points at the side door.
    cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"door": "turnstile"})})
    terminal = DoorTerminal(cfg)
    try:
        assert wait(lambda: terminal.service.link.connected, 20)
        terminal.swipe("77")
        assert decision(collector)["reason"]["code"] == "access.mode"
        terminal.scene.show(framed(cv2.imread(str(shared_data / STRANGER))))
        assert decision(collector)["reason"]["code"] == "access.not_recognised"
        assert wait(lambda: terminal.screen.state.view.outcome == "result.not_recognised", 5)
        view = terminal.screen.state.view
        said = words(view, terminal.screen.catalogue, terminal.cfg.screen.alternative).headline
        assert said == "Not recognised — please use the side door"  # the policy's alternative door
        terminal.scene.show(None)
        time.sleep(1.5)
        terminal.scene.show(framed(astronaut()))
        by_face = decision(collector)
        assert (by_face["decision"], by_face["mode"]) == ("granted", "face")
    finally:
        terminal.stop()
        collector.close()
    assert_nothing_secret(collector)


def test_the_gallery_and_the_stranger_are_what_the_tests_say(site, shared_data) -> None:
    """The LFW photo really is someone else to the embedder: 1:1 against Ann refuses it at 1e-4, and Ann's
    own photo passes (so the refusals above are the face's, not the rig's)."""
    from device.config import load_config
    from device.identity.claim import check_claim
    from tests.gate_rig import install_gallery
    from tests.screen_rig import embedding_of

    cfg = load_config(None, {"service": {"state_dir": str(site["fog"].parent / "state-check")},
                             "identity": {"gallery_public_key_file": str(site["pub"])}})  # fmt: skip
    identity = install_gallery(cfg, site["fog"])
    ann = identity.gallery.subject("ann")
    store = model_store()
    own = embedding_of(store, [(i / 10, framed(astronaut())) for i in range(15)])
    other = embedding_of(
        store, [(i / 10, framed(cv2.imread(str(shared_data / STRANGER)))) for i in range(15)]
    )
    assert check_claim(identity.curves, ann, own, 1e-4).matched
    refused = check_claim(identity.curves, ann, other, 1e-4)
    assert not refused.matched and np.isfinite(refused.score)
