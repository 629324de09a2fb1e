"""The door screen's voice: espeak-ng (Debian's package, no network) renders each prompt in the screen's
language to speech-length audio (checked with sox), the newest instruction wins, and the screen speaks each
new instruction once."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from device.config.screen import ScreenConfig
from device.contracts import Prompt
from device.screen import DoorScreen
from device.screen.catalogue import LANGUAGES, Catalogue
from device.screen.state import View
from device.screen.voice import Espeak, Voice
from device.screen.words import words
from tests.conftest import missing_data


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        missing_data(f"{tool} is not installed (apt-get install espeak-ng sox; setup.sh --test does)")
    return str(found)


def _sox_stats(wav: Path) -> tuple[float, float]:
    """(seconds, RMS amplitude 0..1) as sox measures them."""
    seconds = float(subprocess.run([_need("soxi"), "-D", str(wav)], capture_output=True, text=True).stdout)
    stat = subprocess.run([_need("sox"), str(wav), "-n", "stat"], capture_output=True, text=True).stderr
    rms = next(
        float(line.split(":")[1]) for line in stat.splitlines() if line.startswith("RMS     amplitude")
    )
    return seconds, rms


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_prompt_renders_to_speech_length_audio_in_each_language(language: str, tmp_path: Path) -> None:
    _need("espeak-ng")
    cat = Catalogue(language)
    view = View("challenge", step="turn_left", step_index=1, steps=2, deadline_s=4.0, retry=True)
    text = words(view, cat, "x").spoken()
    wav = tmp_path / f"{language}.wav"
    wav.write_bytes(Espeak(language).render(text))
    seconds, rms = _sox_stats(wav)
    # "Let's try again. Turn your head slowly to your left." is a few seconds of speech, not a click or silence.
    assert 1.5 < seconds < 10.0, seconds
    assert rms > 0.02, rms
    short = tmp_path / "short.wav"
    short.write_bytes(Espeak(language).render(cat.text("challenge.blink")))
    assert _sox_stats(short)[0] < seconds  # the words decide the length


class Recorder:
    """The audio output as a test sees it: every WAV it is given, and whether it was cut."""

    def __init__(self, play_s: float = 0.0) -> None:
        self.played: list[bytes] = []
        self.cuts = 0
        self._play_s = play_s
        self.done = threading.Event()

    def play(self, wav: bytes) -> None:
        self.played.append(wav)
        time.sleep(self._play_s)
        self.done.set()

    def cut(self) -> None:
        self.cuts += 1


class TextEngine:
    """Stands in for espeak-ng where only the choice of words is tested: the text as bytes."""

    def render(self, text: str) -> bytes:
        return text.encode()


def test_the_newest_instruction_wins(tmp_path: Path) -> None:
    out = Recorder(play_s=0.3)
    voice = Voice(TextEngine(), out)  # type: ignore[arg-type]
    voice.start()
    try:
        voice.say("first")
        time.sleep(0.1)
        voice.say("second")
        voice.say("third")
        deadline = time.monotonic() + 5
        while len(out.played) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        voice.stop()
    assert out.played == [b"first", b"third"] and out.cuts >= 2


def test_the_screen_speaks_each_new_instruction_in_its_language() -> None:
    out = Recorder()
    voice = Voice(TextEngine(), out)  # type: ignore[arg-type]
    door = DoorScreen(ScreenConfig(enabled=True, listen="127.0.0.1:0", language="de", voice=True), voice)
    door.start()
    try:
        door.sink.publish(Prompt(1, "prompt", "blink", 1, 2, 3.0, "challenge.blink", 0.0))
        assert out.done.wait(5)
    finally:
        door.stop()
    assert out.played[0] == b"Bitte blinzeln Sie."
