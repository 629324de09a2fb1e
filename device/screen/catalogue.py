"""The door screen's words: one gettext catalogue per language, keyed by code.

The codes are the contract (prompt codes, reason codes, hint codes and the screen's own keys); the texts
live in device/screen/messages/<language>/LC_MESSAGES/faceonly.po, compiled to .mo by
`python scripts/compile_messages.py` (tests/test_screen_catalogue.py fails while a .mo is stale or a code
lacks a text in any language). Read with the standard library's gettext: nothing extra on a terminal.
Placeholders are `{name}` fields, filled here for the voice and by the page for the screen.
"""

from __future__ import annotations

import gettext
import string
from pathlib import Path

from device.contracts import CODES, ENROL_REASON_CODES, PROMPT_CODES
from device.screen.hints import HINT_CODES

DOMAIN = "faceonly"
MESSAGES = Path(__file__).resolve().parent / "messages"
LANGUAGES = ("en", "de", "fr")
# The screen's own words, beside the codes it is sent.
SCREEN_KEYS: dict[str, str] = {
    "screen.look": "idle: what to do to begin",
    "screen.hold": "positioning: the face is good, the challenge is about to start",
    "screen.step": "challenge progress ({index}, {steps})",
    "screen.seconds": "challenge countdown ({seconds})",
    "screen.welcome": "result.welcome when the gallery holds no display name for the subject",
    "screen.rejected": "result.rejected when no reason is known",
    "screen.offline": "the page has lost its connection to the terminal",
    # door modes (device/access): what a door takes, in words, and the keypad
    "idle.credential": "idle, door mode credential: what to use ({ways})",
    "idle.credential+face": "idle, door mode credential+face: a credential first, then the face ({ways})",
    "idle.face|credential": "idle, door mode face|credential: the face, or a credential ({ways})",
    "way.badge": "one of the ways in: the badge",
    "way.qr": "one of the ways in: a QR code shown to the camera",
    "way.pin": "one of the ways in: the keypad (number and PIN)",
    "way.list": "several ways in, the last joined with 'or' ({first}, {last})",
    "way.door": "the alternative door of the door policy ({door}: its label)",
    "keypad.open": "the button that opens the keypad",
    "keypad.number": "keypad: type your number",
    "keypad.pin": "keypad: type your PIN",
    "keypad.ok": "keypad: the OK key",
    "keypad.back": "keypad: the key that deletes the last digit",
    "keypad.cancel": "keypad: the key that closes it",
    "direction.in": "a door that goes both ways: the button for going in",
    "direction.out": "a door that goes both ways: the button for going out",
}


def message_keys() -> dict[str, str]:
    """Every key the catalogue must word, with what it means (the .po files carry it as a comment)."""
    return {**PROMPT_CODES, **ENROL_REASON_CODES, **CODES, **HINT_CODES, **SCREEN_KEYS}


def mo_path(language: str) -> Path:
    return MESSAGES / language / "LC_MESSAGES" / f"{DOMAIN}.mo"


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


class Catalogue:
    """The texts of one language; a key without a text falls back to English, then to the key itself."""

    def __init__(self, language: str) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"no catalogue for language {language!r} (have: {', '.join(LANGUAGES)})")
        self.language = language
        with open(mo_path(language), "rb") as fh:
            self._texts = gettext.GNUTranslations(fh)
        if language != "en":
            with open(mo_path("en"), "rb") as fh:
                self._texts.add_fallback(gettext.GNUTranslations(fh))

    def has(self, key: str) -> bool:
        return self._texts.gettext(key) != key

    def template(self, key: str) -> str:
        return self._texts.gettext(key)

    def text(self, key: str, **params: object) -> str:
        """The text for `key` with its placeholders filled (a missing parameter stays empty)."""
        values = {name: str(params.get(name, "")) for name in placeholders(self.template(key))}
        return self.template(key).format_map(values)

    def table(self) -> dict[str, str]:
        """key -> template for every key: what the page needs to word everything it is sent."""
        return {key: self.template(key) for key in message_keys()}
