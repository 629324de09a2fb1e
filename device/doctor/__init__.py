"""`faceonly doctor`: one check per part of a terminal's set-up, each with a verdict and a fix.

A check is a function that returns a `Check` (it never raises for what it checks: a failure is a
verdict). The camera, models and broker checks use the same code paths as `faceonly run`
(open_source + Capture, ModelStore.verify, the one MQTT client factory), so what the doctor says
is what the service will meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str | None = None  # what to do, for every fail (and for a warn where there is something to do)

    def line(self) -> str:
        text = f"{self.verdict.upper():5s} {self.name:9s} {' '.join(self.detail.split())}"
        return text + (f" -- fix: {self.fix}" if self.fix and self.verdict in ("fail", "warn") else "")
