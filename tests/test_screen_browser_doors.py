"""The door screen under a door policy, in headless Chromium at 800x480 and 1920x1080 (the rig and checks of
tests/test_screen_browser.py): the idle words of each mode, the keypad clicked in the page (number, then the
PIN as dots), the PIN checked by the door's real component (argon2id on its worker), "now look at the camera",
the outcomes, In / Out at a door that goes both ways, and "Not recognised — please use <the alternative
door>". Every page state is read back and saved as a screenshot (var/artefacts/door-screen/doors-*.png)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest

from device.access.component import AccessComponent
from device.config import load_config
from device.config.gate import GateConfig
from device.contracts import FaceObservation
from device.identity.gate import build_gate
from device.identity.runtime import MatchResult
from device.privacy.signing import Signer
from tests.access_parts import KEY, new_signer, signed, source, write_credential_key
from tests.screen_rig import SIZES, DoorRig, Enrolled
from tests.terminal_keys import TerminalKeys
from tests.test_screen_browser import _pages_are_legible
from tests.vision_helpers import model_store

KEYS_FONT = """return Math.min(...[...document.querySelectorAll('#keys button, #actions button')]
  .filter(b => b.getClientRects().length).map(b => parseFloat(getComputedStyle(b).fontSize)))"""


@pytest.fixture(scope="module")
def store():
    return model_store()


def rig_at(door: str, store, tmp: Path, **changes) -> tuple[DoorRig, AccessComponent]:
    embedding = np.random.default_rng(5).normal(size=128).astype(np.float32)
    ann = Enrolled("ann", "Ann Astro", embedding / np.linalg.norm(embedding))
    rig = DoorRig(f"doors-{door}", store, tmp, gallery=[ann])
    policy = source()
    for where, value in changes.items():
        policy["doors"][door][where] = value
    policy_signer = new_signer()
    cfg = load_config(
        None,
        {
            "service": {"state_dir": str(tmp / "state")},
            "gate": {"door": door},
            "identity": {"gallery_public_key_file": str(write_pub(tmp, policy_signer))},
            "access": {"enabled": True, "credential_key_file": str(write_credential_key(tmp / "cred.key"))},
        },
    )
    assert rig.identity is not None
    gate = build_gate(GateConfig())
    component = AccessComponent(
        cfg, policy_signer.public_key, KEY, rig.identity.identity, gate, rig.publish, TerminalKeys().unseal
    )
    component.on_door = rig.door.set_door
    rig.door.on_keypad = component.enter_pin
    rig.door.on_direction = component.choose_direction
    update = signed(policy, policy_signer)
    component.apply_update(update.manifest, update.body)
    return rig, component


def write_pub(tmp: Path, signer: Signer) -> Path:
    path = tmp / "policy.pub"
    path.write_text(base64.b64encode(signer.public_key).decode() + "\n")
    return path


def click(rig: DoorRig, *keys: str) -> None:
    """Touches on the 800x480 page's buttons; the screen is looked at after each."""
    from selenium.webdriver.common.by import By

    browser = dict(rig.browsers)[(800, 480)]
    for key in keys:
        browser.find_element(By.CSS_SELECTOR, f'button[data-key="{key}"]').click()
        time.sleep(0.15)
        rig._settle()


def drive(component: AccessComponent, rig: DoorRig, until, timeout: float = 15.0) -> None:
    """The loop's part: tick the component until `until()` (the PIN's check runs on its worker)."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the door never decided"
        component.tick()
        time.sleep(0.02)
    rig._settle()


def test_keypad_then_look_at_the_camera_then_the_outcomes(store, tmp_path) -> None:
    rig, component = rig_at("main", store, tmp_path, claim_window_s=3.0)
    with rig:
        rig._settle()
        idle = rig.shots[-1].page
        assert idle["message"] == "Use your badge, your QR code or the keypad, then look at the camera"
        click(rig, "open", "4", "2", "4", "2")
        typed = rig.shots[-2].page
        assert typed["screen"] == "keypad" and typed["message"] == "Enter your number"
        click(rig, "ok", "2", "4", "6")
        assert rig.shots[-1].page["message"] == "Enter your PIN"
        for _, browser in rig.browsers:
            shown = browser.execute_script("return document.getElementById('keypad-display').textContent")
            assert shown == "4242 · ●●●" and "246" not in browser.page_source
            assert browser.execute_script(KEYS_FONT) >= 32
        click(rig, "8", "ok")
        drive(component, rig, lambda: rig.door.state.view.screen == "look")
        assert rig.shots[-1].page["message"] == "Thank you — now look at the camera"
        time.sleep(3.2)  # no face comes
        drive(component, rig, lambda: rig.door.state.view.screen == "result")
        assert rig.shots[-1].page["message"] == "Not let through: no face in time"
        click(rig, "open", "4", "2", "4", "2", "ok", "0", "0", "0", "0", "ok")
        drive(component, rig, lambda: rig.door.state.view.reason == "access.pin_wrong")
        assert rig.shots[-1].page["message"] == "Not let through: wrong number or PIN"
        _pages_are_legible(rig)
    screens = {(s.size, s.page["screen"]) for s in rig.shots}
    for size in SIZES:
        assert {
            (size, "idle"),
            (size, "keypad"),
            (size, "checking"),
            (size, "look"),
            (size, "result"),
        } <= screens


def test_a_door_both_ways_and_a_welcome_without_a_face(store, tmp_path) -> None:
    rig, component = rig_at("side", store, tmp_path)
    with rig:
        rig._settle()
        assert rig.shots[-1].page["message"] == "Please use your badge, your QR code or the keypad"
        click(rig, "in")
        drive(component, rig, lambda: rig.door.state.view.chosen == "in")
        for _, browser in rig.browsers:
            assert (
                browser.execute_script("return document.getElementById('go-in').getAttribute('aria-pressed')")
                == "true"
            )
        click(rig, "open", "5", "1", "5", "1", "ok", "1", "3", "5", "7", "ok")
        drive(component, rig, lambda: rig.door.state.view.outcome == "result.welcome")
        assert rig.shots[-1].page["message"] == "Welcome"  # Bo has no gallery entry, so no name to show
        assert component.take_events()[-1]["access"]["direction"] == "in"
        _pages_are_legible(rig)


def test_not_recognised_points_at_the_alternative_door(store, tmp_path) -> None:
    rig, component = rig_at("turnstile", store, tmp_path)
    stranger = np.zeros(128, np.float32)
    stranger[0] = 1.0
    obs = FaceObservation(7, "accepted", 0.0, 1.0, 0.5, (0, 0, 1, 1), {}, {}, (), stranger)
    with rig:
        rig._settle()
        assert rig.shots[-1].page["message"] == "Look at the camera"
        component.faces([obs], [MatchResult(None, 0.2, 0.0, 0.93, 1, None)])
        rig._settle()
        assert rig.shots[-1].page["message"] == "Not recognised — please use the side door"
        assert rig.shots[-1].page["icon"] == "unknown"
        _pages_are_legible(rig)
