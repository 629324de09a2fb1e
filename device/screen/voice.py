"""The door screen's voice: each new view spoken in the screen's language by espeak-ng from the distribution
(`apt-get install espeak-ng`), played through the local audio output. Never a network service.

Speech runs on its own thread: a newer utterance replaces one still waiting and cuts the one being spoken
(a person needs the current instruction, not the queue). The audio output sits behind a two-method interface;
ALSA's `aplay` is the real one, and tests render to WAV files instead.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import threading
from typing import Protocol

log = logging.getLogger(__name__)

VOICES = {"en": "en", "de": "de", "fr": "fr"}  # espeak-ng voice per screen language
WORDS_PER_MINUTE = 150  # espeak-ng's default is 175: slower carries better at a door
RENDER_TIMEOUT_S = 10.0


class VoiceError(RuntimeError):
    """No speech engine or no audio output: the terminal runs on without a voice (and says so)."""


class Espeak:
    """Text -> WAV bytes with espeak-ng, in one language."""

    def __init__(self, language: str) -> None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise VoiceError("espeak-ng is not installed (apt-get install espeak-ng)")
        self._cmd = [exe, "-v", VOICES[language], "-s", str(WORDS_PER_MINUTE), "--stdout"]

    def render(self, text: str) -> bytes:
        # The text is one argument after "--": it can never be read as an option.
        done = subprocess.run(
            [*self._cmd, "--", text], capture_output=True, timeout=RENDER_TIMEOUT_S, check=False
        )
        if done.returncode != 0 or not done.stdout:
            raise VoiceError(f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        return sized_wav(done.stdout)


def sized_wav(wav: bytes) -> bytes:
    """espeak-ng streams its WAV to stdout with placeholder sizes (it cannot seek back): write the real ones,
    so that every reader (aplay, sox) sees the whole utterance and its length."""
    data = wav.find(b"data", 12)
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE" or data < 0:
        raise VoiceError("espeak-ng did not write a WAV file")
    out = bytearray(wav)
    out[4:8] = struct.pack("<I", len(wav) - 8)
    out[data + 4 : data + 8] = struct.pack("<I", len(wav) - data - 8)
    return bytes(out)


class AudioOut(Protocol):
    def play(self, wav: bytes) -> None:
        """Play to the end (blocking) unless cut."""
        ...

    def cut(self) -> None:
        """Stop what plays now (from another thread)."""
        ...


class Aplay:
    """The local audio output through ALSA's aplay (alsa-utils)."""

    def __init__(self) -> None:
        exe = shutil.which("aplay")
        if exe is None:
            raise VoiceError("aplay is not installed (apt-get install alsa-utils)")
        self._exe = exe
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def play(self, wav: bytes) -> None:
        with self._lock:
            self._proc = subprocess.Popen(
                [self._exe, "-q", "-"], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        proc = self._proc
        try:
            assert proc.stdin is not None
            proc.stdin.write(wav)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # cut while writing
        proc.wait()

    def cut(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()


class Voice:
    """Says the latest text; `say` never blocks."""

    def __init__(self, engine: Espeak, out: AudioOut) -> None:
        self._engine, self._out = engine, out
        self._next: str | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="door-voice", daemon=True)
        self.spoken = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def say(self, text: str) -> None:
        with self._wake:
            self._next = text
            self._wake.notify()
        self._out.cut()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._out.cut()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._next is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                text, self._next = self._next, None
            if text is None:
                continue
            try:
                self._out.play(self._engine.render(text))
                self.spoken += 1
            except (VoiceError, OSError, subprocess.SubprocessError) as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("door screen voice: %s (%d failures)", exc, self.failures)
