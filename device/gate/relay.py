"""A door relay on a GPIO pin, pulsed for a moment: gpiozero (lgpio on a Raspberry Pi; its MockFactory in
tests). gpiozero's own background thread ends the pulse, so the caller never sleeps."""

from __future__ import annotations

from typing import Any


class Relay:
    def __init__(self, pin: int, active_high: bool, pulse_s: float, pin_factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice  # optional extra `gate`: imported only where a relay is

        self.pulse_s = pulse_s
        self.device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )

    def pulse(self) -> None:
        self.device.blink(on_time=self.pulse_s, off_time=0.01, n=1, background=True)

    def close(self) -> None:
        self.device.close()
