"""The small interfaces between the service's parts. The service loop only talks to these."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from device.contracts.frames import Frame
from device.contracts.observation import FaceObservation
from device.contracts.prompts import GuideSink, PromptSink


class FrameSource(Protocol):
    """Camera or replay. Yields frames in order; raises SourceError when it gives up."""

    # True for a camera (only its latest frame matters: older ones are dropped), False for a replay
    # (every frame, in order: the consumer's pace is the source's pace).
    live: bool

    def frames(self) -> Iterator[Frame]: ...

    def release(self, frame: Frame) -> None:
        """The service is done with this frame: its buffer is zeroed and returned to the ring."""
        ...

    def stats(self) -> dict[str, Any]:
        """Frames read, dropped, errors: reported in health."""
        ...

    def close(self) -> None: ...


class FacePipeline(Protocol):
    """Frames in, finished observations out (at most one per track and pass)."""

    @property
    def policy(self) -> str:
        """The liveness policy in effect: the configured one, or "passive" while a challenge has nobody to ask."""
        ...

    def process(self, frame: Frame) -> list[FaceObservation]: ...

    def flush(self) -> list[FaceObservation]:
        """End of stream: finish every open track."""
        ...

    def stats(self) -> dict[str, Any]:
        """Per-stage latency (ms), fps, drops: reported in health."""
        ...

    def set_prompt_sink(self, sink: PromptSink | None) -> None:
        """Where the liveness challenge's prompts go; without one there is no challenge."""
        ...

    def set_guide_sink(self, sink: GuideSink | None) -> None:
        """Where each tracked face's guide goes (the door screen's face guide and hints)."""
        ...


class Protector(Protocol):
    """Turns an observation into the event body that may leave the terminal (thumbnail, sealing, signing)."""

    def protect(self, observation: FaceObservation, match: Any = None) -> dict[str, Any]:
        """`match`: the on-device 1:N decision (device.identity.runtime.MatchResult) when a gallery is loaded."""
        ...

    def enrolment_fields(self, observation: FaceObservation) -> dict[str, Any]:
        """The enroll reply's template (and thumbnail), protected like an event's biometric."""
        ...

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with a `signature` over its canonical JSON added (origin and integrity)."""
        ...

    def unseal(self, sealed_b64: str) -> bytes:
        """Open what the backend sealed to this terminal's key (device.privacy.terminalseal); ValueError if it
        cannot (not sealed to this terminal, or altered)."""
        ...

    def report(self) -> dict[str, Any]:
        """What this terminal sends and keeps, for `privacy.report`."""
        ...
