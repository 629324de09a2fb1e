"""The door screen's keypad: the terminal keeps what is typed (a view says how many PIN digits, never the PIN),
an entry goes to the door's component and nowhere else, and POST /keypad takes a key only from the page itself
(Host, Origin, JSON, token; anything else is refused without touching the keypad); any body is fuzzed."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from device.config.screen import ScreenConfig
from device.screen import DoorScreen
from device.screen.catalogue import Catalogue
from device.screen.state import KEYPAD_IDLE_S, ScreenState, View
from device.screen.words import words
from tests.test_screen_server import SCHEMAS, Events, _port

DOOR = {"mode": "credential+face", "credentials": ["pin", "badge", "qr"], "keypad": True,
        "alternative_door": "side door", "direction": "in", "chosen": None}  # fmt: skip


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def press(state: ScreenState, *keys: str) -> list[tuple[View | None, tuple[str, str] | None]]:
    return [state.key(k, 0.0) for k in keys]


def test_the_state_keeps_the_digits_and_views_only_count_the_pin() -> None:
    clock = Clock()
    state = ScreenState(clock=clock)
    assert state.key("open", 0.0) == (None, None)  # no door policy: no keypad
    state.set_door(DOOR)
    (view, _), *_ = press(state, "open")
    assert view is not None and (view.screen, view.keypad, view.typed, view.masked) == (
        "keypad",
        "number",
        "",
        0,
    )
    results = press(state, "4", "2", "4", "2", "ok", "2", "4", "6")
    view = results[-1][0]
    assert view is not None and (view.keypad, view.typed, view.masked) == ("pin", "4242", 3)
    assert "246" not in json.dumps(view.to_dict())
    assert press(state, "ok")[0] == (None, None)  # a PIN is four digits at least
    results = press(state, "back", "6", "8", "ok")
    assert results[-1] == (None, ("4242", "2468"))
    assert state._pin == "" and state._number == ""  # forgotten once handed over
    assert words(state.view, Catalogue("en"), "reception").headline == "Enter your PIN"


def test_an_untouched_keypad_closes_and_forgets_and_the_challenge_waits_for_it() -> None:
    from device.contracts import Prompt

    clock = Clock()
    state = ScreenState(clock=clock)
    state.set_door(DOOR)
    press(state, "open", "1", "2")
    step = Prompt(3, "prompt", "blink", 1, 2, 5.0, "challenge.blink", 0.0)
    assert state.prompt(step, None, 0.0) is None  # someone is typing
    outcome = Prompt(3, "feedback", None, 0, 0, 0.0, "result.rejected", 0.0, {"reason": "access.pin_wrong"})
    assert state.prompt(outcome, None, 0.0).screen == "result"  # an outcome does take over
    press(state, "open", "5")
    clock.now += KEYPAD_IDLE_S + 0.1
    assert state.tick().screen == "idle" and state._number == ""


def test_idle_words_follow_the_door() -> None:
    cat = Catalogue("en")
    state = ScreenState()
    assert words(state.view, cat, "reception").headline == "Look at the camera"
    state.set_door(DOOR)
    assert words(state.view, cat, "reception").headline == (
        "Use your badge, your QR code or the keypad, then look at the camera"
    )
    state.set_door({**DOOR, "mode": "credential", "credentials": ["badge"], "alternative_door": None})
    assert words(state.view, cat, "reception").headline == "Please use your badge"
    state.set_door(
        {**DOOR, "mode": "face|credential", "credentials": ["qr", "pin"], "alternative_door": None}
    )
    assert (
        words(state.view, cat, "reception").headline
        == "Look at the camera, or use your QR code or the keypad"
    )
    de = Catalogue("de")
    assert (
        words(state.view, de, "Empfang").headline
        == "In die Kamera schauen oder Ihren QR-Code oder die Tastatur verwenden"
    )


@pytest.fixture
def screen():
    door = DoorScreen(ScreenConfig(enabled=True, listen="127.0.0.1:0", language="en"))
    entries: list[tuple[str, str]] = []
    door.on_keypad = lambda number, pin: entries.append((number, pin)) is None
    door.entries = entries  # type: ignore[attr-defined]
    door.start()
    yield door
    door.stop()


def post(port: int, body: bytes, **headers: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    base = {
        "Host": f"127.0.0.1:{port}",
        "Origin": f"http://127.0.0.1:{port}",
        "Content-Type": "application/json",
    }
    conn.request("POST", "/keypad", body=body, headers={**base, **headers})
    status = conn.getresponse().status
    conn.close()
    return status


def key(door: DoorScreen, k: str, **headers: str) -> int:
    return post(
        _port(door), json.dumps({"key": k}).encode(), **{"X-Keypad-Token": door.keypad_token, **headers}
    )


def test_keys_from_the_page_reach_the_keypad_and_the_pin_never_leaves_it(screen: DoorScreen) -> None:
    port = _port(screen)
    page = Events(port)
    views = Draft202012Validator(json.loads((SCHEMAS / "view.json").read_text()))
    try:
        page.next()
        assert key(screen, "open") == 409  # no door policy yet: the keypad is not open to anyone
        screen.set_door(DOOR)
        assert page.next()[1]["keypad_ok"] is True
        statuses = [key(screen, k) for k in ("open", *"5151", "ok", *"1357", "ok")]
        assert statuses == [204] * 11
        seen = []
        deadline = time.monotonic() + 5
        while not screen.entries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert screen.entries == [("5151", "1357")]
        while len(seen) < 10:
            _, data = page.next()
            seen.append(data)
            assert not list(views.iter_errors(data))
        stream = json.dumps(seen)
        assert "1357" not in stream and '"masked": 4' in stream and '"typed": "5151"' in stream
    finally:
        page.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Keypad-Token": "not-the-token"},
        {"X-Keypad-Token": ""},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
    ],
)
def test_a_key_not_from_the_page_is_refused(screen: DoorScreen, headers: dict[str, str]) -> None:
    screen.set_door(DOOR)
    time.sleep(0.1)
    assert key(screen, "open", **headers) == 403
    assert screen.state.view.screen == "idle"


def test_a_foreign_host_is_refused_before_anything(screen: DoorScreen) -> None:
    assert key(screen, "open", Host="attacker.example:80") == 421


BODIES = st.one_of(
    st.binary(max_size=100),
    st.builds(
        lambda v: json.dumps(v).encode(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    ),
    st.builds(lambda k: json.dumps({"key": k}).encode(), st.text(max_size=8)),
)


def test_any_body_is_one_key_or_refused() -> None:
    door = DoorScreen(ScreenConfig(enabled=True, listen="127.0.0.1:0"))
    door.on_keypad = lambda number, pin: True
    door.start()
    door.set_door(DOOR)

    @settings(max_examples=200, deadline=None)
    @given(body=BODIES)
    def one(body: bytes) -> None:
        status = post(_port(door), body, **{"X-Keypad-Token": door.keypad_token})
        assert status in (204, 400, 409)
        if status == 204:
            assert json.loads(body)["key"] in ("open", "back", "ok", "cancel", *"0123456789")

    try:
        one()
    finally:
        door.stop()
