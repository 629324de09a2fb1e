"""The door screen's words: every prompt, outcome, reason, hint and screen code has a text in every language,
with the same placeholders as the English one; the compiled catalogues match their sources; every quality
reason has a hint; every view is worded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device.contracts import CODES, ENROL_REASON_CODES, PROMPT_CODES, STEP_CODES
from device.screen.catalogue import LANGUAGES, Catalogue, message_keys, placeholders
from device.screen.hints import HINT_CODES, QUALITY_HINTS, hint_for
from device.screen.state import View
from device.screen.words import words

ROOT = Path(__file__).resolve().parent.parent
ALTERNATIVE = "your badge"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_code_has_a_text_in_every_language(language: str) -> None:
    cat, english = Catalogue(language), Catalogue("en")
    keys = message_keys()
    for group in (PROMPT_CODES, ENROL_REASON_CODES, CODES, HINT_CODES):
        assert set(group) <= set(keys)
    missing = [k for k in keys if not cat.has(k)]
    assert missing == [], f"{language}: no text for {missing}"
    for key in keys:
        text = cat.template(key)
        assert text.strip() and text != key
        assert placeholders(text) == placeholders(english.template(key)), (language, key, text)
    if language != "en":  # translated, not copied
        same = [k for k in keys if cat.template(k) == english.template(k)]
        assert len(same) <= 2, same


def test_the_compiled_catalogues_match_their_sources() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compile_messages.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_every_quality_reason_has_a_hint_and_the_first_thing_to_fix_wins() -> None:
    quality = {code for code in CODES if code.startswith("quality.")}
    assert quality <= set(QUALITY_HINTS), "a new quality reason needs its hint (device/screen/hints.py)"
    assert set(QUALITY_HINTS.values()) <= set(HINT_CODES)
    assert hint_for([]) is None
    assert hint_for(["quality.too_dark"]) == "hint.light"
    assert hint_for(["quality.blurred", "quality.too_small"]) == "hint.closer"
    assert hint_for(["quality.yaw", "quality.cut_off"]) == "hint.centre"
    assert hint_for([], mesh_presence=0.1) == "hint.uncover" and hint_for([], mesh_presence=0.9) is None


def _views() -> list[View]:
    views = [View("idle"), View("idle", enrolment="Ann Example"), View("positioning"), View("checking")]
    views += [View("positioning", hint=h) for h in HINT_CODES]
    views += [View("challenge", step=s, step_index=1, steps=2, deadline_s=4.0) for s in STEP_CODES]
    views += [View("challenge", step="blink", retry=True, step_index=2, steps=2, deadline_s=3.0)]
    views += [
        View("result", outcome=o) for o in ("result.accepted", "result.not_recognised", "result.rejected")
    ]
    views += [
        View("result", outcome="result.welcome", name="Ann Example"),
        View("result", outcome="result.welcome"),
    ]
    views += [View("result", outcome="result.rejected", reason=r) for r in CODES]
    views += [
        View("enrol", outcome="enrol.done"),
        View("enrol", outcome="enrol.failed", reason="enrol.two_faces"),
    ]
    return views


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_view_is_worded_without_a_code_or_an_empty_field(language: str) -> None:
    cat = Catalogue(language)
    for view in _views():
        said = words(view, cat, ALTERNATIVE)
        assert said.headline and "{" not in said.spoken(), (view, said)
        assert not any(key in said.spoken() for key in message_keys()), (view, said)
    welcome = words(View("result", outcome="result.welcome", name="Ann Example"), cat, ALTERNATIVE)
    assert "Ann Example" in welcome.headline
    assert ALTERNATIVE in words(View("result", outcome="result.not_recognised"), cat, ALTERNATIVE).headline
    retry = words(View("challenge", step="blink", retry=True, step_index=2, steps=2), cat, ALTERNATIVE)
    assert retry.before == cat.text("challenge.retry")


def test_english_words_for_the_door() -> None:
    cat = Catalogue("en")
    assert (
        words(View("result", outcome="result.welcome", name="Ann"), cat, ALTERNATIVE).headline
        == "Welcome, Ann"
    )
    rejected = View("result", outcome="result.rejected", reason="liveness.no_blink", hint=None)
    assert words(rejected, cat, ALTERNATIVE).headline == "Not let through: no blink was seen"
    assert (
        words(View("positioning", hint="hint.light"), cat, ALTERNATIVE).headline
        == "Too dark — face the light"
    )
    assert (
        words(View("challenge", step="turn_left"), cat, ALTERNATIVE).headline
        == "Turn your head slowly to your left"
    )
    assert words(View("result", outcome="result.not_recognised"), cat, ALTERNATIVE).headline == (
        "Not recognised — please use your badge"
    )
    assert (
        words(View("idle", enrolment="Ann"), cat, ALTERNATIVE).headline
        == "Enrolment for Ann: look at the camera"
    )
    assert words(View("enrol", outcome="enrol.done"), cat, ALTERNATIVE).headline == "Enrolment done"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="no catalogue"):
        Catalogue("xx")
