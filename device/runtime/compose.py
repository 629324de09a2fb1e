"""The one way to build a terminal from its config, for the CLI, the tests and the benches.

`vision(cfg)` makes the face half (checked models, camera or replay, face pipeline, protector): all that
`faceonly run --no-mqtt` needs. `build(cfg)` adds the edges the service loop drives (device.runtime.parts)
and the components that decide (gate, on-device identity, door modes) and wires them to each other and to
the door screen; `Service` only drives what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.access.component import AccessComponent
from device.access.wiring import build_access
from device.config import Config
from device.contracts import FacePipeline, FrameSource, Protector
from device.identity.component import IdentityComponent
from device.identity.gate import Gate, build_gate
from device.identity.wiring import build_component
from device.infra.modelstore import ModelError, ModelStore
from device.runtime.parts import TerminalParts, build_parts
from device.screen.door import DoorScreen
from device.transport.commands import Deferred
from device.transport.envelope import Meta, encode, envelope

VisionStages = tuple[ModelStore, FrameSource, FacePipeline, Protector]


class PermanentFault(Exception):
    """A start-up fault that restarting cannot fix; the operator must (exit EXIT_PERMANENT)."""


@dataclass
class Terminal:
    """Everything a terminal is made of, built and wired; the service loop drives it."""

    store: ModelStore
    pipeline: FacePipeline
    protector: Protector
    parts: TerminalParts
    gate: Gate
    identity: IdentityComponent | None
    access: AccessComponent | None


def vision(cfg: Config) -> VisionStages:
    """The checked models, the frame source, the face pipeline and the protector."""
    from device.privacy.keyfile import KeyFileError
    from device.privacy.protector import build_protector
    from device.vision.exposure import FaceExposure, controls_of
    from device.vision.liveness.calibration import CueCalibration
    from device.vision.pipeline import build_pipeline
    from device.vision.sources import open_source

    store = ModelStore(cfg.service.models_dir)
    failed = [r for r in store.verify() if not r.ok]
    if failed:
        raise ModelError("; ".join(r.problem for r in failed))
    try:
        protector = build_protector(cfg, Path(cfg.service.state_dir))
    except (KeyFileError, ValueError) as exc:  # a damaged key, an unsafe or unreadable privacy setting
        raise PermanentFault(str(exc)) from None
    live = cfg.vision.liveness
    calibration = CueCalibration.in_state_dir(
        Path(cfg.service.state_dir),
        min_passes=live.calibration_min_passes,
        max_passes=live.calibration_max_passes,
    )
    pipeline = build_pipeline(cfg, store, calibration=calibration)
    pipeline.learn_calibration = live.calibration_learn
    if protector.template is not None:
        protector.template.prepare(pipeline.embedding_dim)
    source = open_source(cfg.vision.source, cfg.vision)
    controls = controls_of(source)  # a live camera's, never a replay's
    if controls is not None and cfg.vision.camera.face_exposure:
        pipeline.faces_hook = FaceExposure(controls, cfg.vision.camera.face_exposure_target).observe
    return store, source, pipeline, protector


def build(cfg: Config, screen: DoorScreen | None = None, stages: VisionStages | None = None) -> Terminal:
    """A whole terminal. `stages`: a face half already made (the CLI makes it under its config fallback);
    `screen`: the door screen, which the caller starts and stops (it outlives a service restart)."""
    store, source, pipeline, protector = stages if stages is not None else vision(cfg)
    try:
        command_key = cfg.control.read_public_key()
    except ValueError as exc:  # a damaged or unreadable key file: restarting cannot fix it
        raise PermanentFault(str(exc)) from None
    parts = build_parts(cfg, source, command_key, screen)
    pipeline.set_prompt_sink(parts.prompts)

    def publish_gate(body: dict[str, Any], ttl_s: float) -> bool:
        """Signed, and sent now or never: QoS 0, which paho neither holds while offline nor resends after a
        reconnect (a QoS 1 one was delivered 15.7 s late after a broker outage). False: not sent."""
        payload = protector.sign(envelope("gate.decision", cfg.terminal_id, body, ttl_s=ttl_s))
        sent = parts.link.publish(parts.topics.gate, encode(payload), qos=0, meta=Meta.of(payload))
        return sent is not None

    gate = build_gate(cfg.gate, publish_gate)
    identity = build_component(
        cfg,
        store,
        prompt=parts.prompts.publish,
        gate=gate,
        publish_reply=parts.commands.publish,
        protector=protector,
        purge_where=parts.outbox.purge_where,
    )
    if identity is not None:
        _wire_identity(identity, parts)
    access = build_access(
        cfg,
        identity.identity if identity is not None else None,
        gate,
        parts.prompts.publish,
        protector.unseal,
    )
    if access is not None:
        access.register(parts.plane)
        if identity is not None:
            identity.door = access.faces
    if screen is not None:
        _wire_screen(screen, pipeline, parts, identity, access)
    return Terminal(store, pipeline, protector, parts, gate, identity, access)


def _wire_identity(identity: IdentityComponent, parts: TerminalParts) -> None:
    """Gallery commands, enrolment at the door (answered when the next live face comes)."""

    def enroll(args: dict[str, Any]) -> Deferred:
        identity.start_enrolment(args, None)
        return Deferred()

    identity.register(parts.plane)
    parts.plane.register("enroll", enroll)
    parts.commands.on_deferred = identity.attach_reply


def _wire_screen(
    screen: DoorScreen,
    pipeline: FacePipeline,
    parts: TerminalParts,
    identity: IdentityComponent | None,
    access: AccessComponent | None,
) -> None:
    """Face guides and names to the door screen; its keypad and direction buttons to the door modes."""
    pipeline.set_guide_sink(parts.prompts)
    screen.sink.set_names(identity.display_name if identity is not None else None)
    if access is not None:
        access.on_door = screen.set_door
        screen.on_keypad = access.enter_pin
        screen.on_direction = access.choose_direction
        screen.set_door(access.door_info())
