"""The door screen: what the person at the door sees and hears (device/screen/door.py), served by the terminal
itself on loopback, worded from a message catalogue in the terminal's language."""

from __future__ import annotations

import logging

from device.config.screen import ScreenConfig
from device.screen.door import DoorScreen

log = logging.getLogger(__name__)


def build_door_screen(cfg: ScreenConfig) -> DoorScreen:
    """The door screen for [screen] (not started). Without espeak-ng or an audio output the voice is off,
    said once in the log: the screen still runs."""
    voice = None
    if cfg.voice:
        from device.screen.voice import Aplay, Espeak, Voice, VoiceError

        try:
            voice = Voice(Espeak(cfg.language), Aplay())
        except VoiceError as exc:
            log.warning("door screen: no voice: %s", exc)
    return DoorScreen(cfg, voice)


__all__ = ["DoorScreen", "build_door_screen"]
