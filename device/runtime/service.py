"""The terminal service: frames in, protected face events out, commands answered, one loop.

The loop owns every piece of mutable state (config, outbox, pipeline, protector). paho's thread
only puts values on `inbox`; the loop drains it between frames (or waits on it once the source has
ended). Order per face: protect -> envelope -> sign -> outbox (fsynced) -> publish.

Size (~500 lines): the loop and every handler that touches the state it owns (status, health, desired
config, reload) stay in one class on purpose; the parts are built outside (device.runtime.compose) and
what can be pure lives in its own modules (alarms, linkwatch, looptimes, availability).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import device
from device.config import Config, ConfigError
from device.identity.feedback import outcome_prompt
from device.runtime.alarms import Alarms
from device.runtime.compose import Terminal
from device.runtime.control import register_all
from device.runtime.health import cpu_temperature_c
from device.runtime.homeassistant import Discovery, HomeAssistant
from device.runtime.lifecycle import Lifecycle
from device.runtime.linkwatch import LinkWatch
from device.runtime.looptimes import LoopTimes
from device.runtime.runtime_config import RuntimeConfig
from device.transport.availability import Availability
from device.transport.commands import CommandError
from device.transport.desired import DESIRED_COMMAND, parse_desired
from device.transport.envelope import Meta, encode, envelope
from device.transport.link import Acked, Connected, Inbound, LinkEvent
from device.transport.presence import foreign_birth
from device.vision.faults import StageFaults, combined

log = logging.getLogger(__name__)

# What an operator must know about a terminal whose liveness is not the challenge (status, health, log, page).
LIVENESS_WARNINGS = {
    "off": "liveness is off: no liveness check at all; a photo or a screen of an enrolled person is accepted",
    "passive": "liveness is passive: no challenge, soft cues only; a photo of an enrolled person can pass",
}

FRAME_WAIT_S = 0.05  # how long the loop waits for a frame before serving commands and health
IDLE_WAIT_S = 0.2


class Service:
    def __init__(
        self,
        runtime: RuntimeConfig,
        terminal: Terminal,
        lifecycle: Lifecycle,
        reload_base: Callable[[], Config],
    ) -> None:
        """The terminal is built outside (device.runtime.compose.build, by the CLI or a test); the service
        only drives it."""
        cfg = runtime.current
        parts = terminal.parts
        self.reload_base = reload_base
        self.runtime = runtime
        self.store = terminal.store
        self.pipeline = terminal.pipeline
        self.protector = protector = terminal.protector
        self.lifecycle = lifecycle
        self.tid = cfg.terminal_id
        self.topics = parts.topics
        self.started = time.time()  # stamps the birth message (started_at)
        self._started_mono = time.monotonic()  # uptime runs on this
        self.inbox = parts.inbox
        self.outbox = parts.outbox
        self.plane = parts.plane
        self.link = parts.link
        self.courier = parts.courier
        self.commands = parts.commands
        self.capture = parts.capture
        self.source = parts.capture.source
        self.prompts = parts.prompts
        self.screen = parts.screen
        self.gate = terminal.gate
        self.identity = terminal.identity
        self.access = terminal.access
        register_all(self.plane, self)
        self._faces_on = True  # whether the last frame went through the face pipeline
        self.restart_requested = False
        self.source_finished = False
        self.frames_done = 0
        self.loop_times = LoopTimes()
        self.events = {"accepted": 0, "rejected": 0}
        self.desired_refused: dict[str, int] = {}
        self.faults = StageFaults()  # match and protect; the pipeline counts its own stages
        self.alarms = Alarms(cfg.service.camera_stall_s)
        self.watch = LinkWatch(self.alarms, lambda: self.link.broker, self.link.client_id)
        self.ha = self._home_assistant(cfg)
        self.availability = Availability(self.tid, protector.sign, self._status_body())
        self._next_health = 0.0

    def _home_assistant(self, cfg: Config) -> HomeAssistant | None:
        if not cfg.homeassistant.enabled:
            return None
        discovery = Discovery(cfg.homeassistant, self.topics, has_temperature=cpu_temperature_c() is not None)
        return HomeAssistant(
            discovery, lambda t, p: self.link.publish(t, p, qos=1, retain=True), lambda: self.link.connected
        )

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Runs until SIGTERM/SIGINT or `restart`; returns the process exit status (0: clean stop).

        The shutdown path runs however the loop ends, an unexpected error included (it is re-raised).
        """
        try:
            self._loop()
        finally:
            status = self._shutdown()
        return status

    def _loop(self) -> None:
        warning = self._control_alarms().get("liveness_warning")
        if warning:
            log.warning("%s", warning)
        self.link.start(self.availability.birth, self.availability.will)
        self._publish_reported()
        self.capture.start()
        ready = False
        while not (self.lifecycle.stop_requested or self.restart_requested):
            if self.lifecycle.take_reload():
                self._reload()
            # Requests waiting: take a frame only if one is ready, else serve them (a budget at a time).
            frame = self.capture.get(0.0 if self.commands.ready else FRAME_WAIT_S)
            if frame is not None:
                taken_at, cpu_at = time.monotonic(), time.thread_time()
                try:
                    observations = self._faces(frame)
                    if self.access is not None:
                        self.access.scan(frame)
                finally:
                    self.source.release(frame)
                self._emit(observations)
                self.frames_done += 1
                self.alarms.frame()
                self.lifecycle.frame_processed()
                if not ready:
                    self.lifecycle.ready()
                    ready = True
                self._service_io(0.0)
                self.loop_times.add(
                    self.capture.ready_at, taken_at, time.monotonic(), time.thread_time() - cpu_at
                )
                continue
            if self.capture.ended and not self.source_finished:
                self.source_finished = True
                self._emit(self.pipeline.flush())
                log.info(
                    "source finished after %d frames; still serving commands (SIGTERM or Ctrl-C stops)",
                    self.frames_done,
                )
                self.lifecycle.status("source ended; serving commands")
            self._service_io(IDLE_WAIT_S if self.capture.ended else 0.0)

    def _faces(self, frame: Any) -> list[Any]:
        """The face pipeline on this frame, when anything needs faces: always without a door policy; under
        one, while its mode uses faces now (credential+face: only while a credential waits for its face) or
        an enrolment waits. Pausing ends every open track (their observations go out as usual)."""
        wanted = (
            self.access is None
            or self.access.wants_faces()
            or (self.identity is not None and self.identity.enrolling)
        )
        if wanted:
            self._faces_on = True
            return self.pipeline.process(frame)
        if self._faces_on:
            self._faces_on = False
            return self.pipeline.flush()
        return []

    def _service_io(self, wait_s: float) -> None:
        if self.commands.ready:
            wait_s = 0.0
        try:
            event = self.inbox.get(timeout=wait_s) if wait_s > 0 else self.inbox.get_nowait()
        except queue.Empty:
            event = None
        while event is not None:
            self._on_link(event)
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                event = None
        self.commands.serve()
        if self.identity is not None:
            self.identity.tick()
        if self.access is not None:
            self.access.tick()
            self._emit_access()
        self.courier.pump()
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + self.runtime.current.service.health_interval_s
            self._publish_health()

    def _on_link(self, event: LinkEvent) -> None:
        self.courier.handle(event)
        self.watch.handle(event)
        if isinstance(event, Acked):
            self.commands.acked(event.mid)
        elif isinstance(event, Inbound):
            self._on_inbound(event)
        elif isinstance(event, Connected):
            self.commands.reconnected()
            if self.ha is not None:
                self.ha.connected()

    def _on_inbound(self, msg: Inbound) -> None:
        # Command requests have their own queue (served by self.commands); here only our own retained
        # status (another client's birth under our id means a duplicate terminal id) and config/desired.
        if msg.topic == self.topics.status:
            other = foreign_birth(msg.payload, round(self.started, 3))
            if other is not None:
                self.watch.taken_over_by(other)
            return
        if msg.topic == self.topics.config_desired:
            self._on_desired(msg.payload)

    # ---- events -----------------------------------------------------------------------------

    def _emit(self, observations: list[Any]) -> None:
        if self.identity is not None:
            try:
                matches = self.identity.observe(observations)  # it tells the person the outcome
            except Exception as exc:  # noqa: BLE001 - a failing stage drops what it was given, never the service
                # Not sent as unmatched: under identity.send_embedding = unknown_only that would release biometrics.
                self.faults.record("match", exc, f"{len(observations)} observation(s)")
                return
        else:
            # No decision here: the backend's is the one that counts, and it cannot ask for the mirror image.
            observations = [obs.with_flip() for obs in observations]
            matches = [None] * len(observations)
            if self.access is not None:
                self.access.faces(observations, matches)
            for obs in observations:
                if self.access is None:
                    self.prompts.publish(outcome_prompt(obs, None, identifies=False))
        for obs, match in zip(observations, matches, strict=True):
            try:
                body = self.protector.protect(obs, match)
            except Exception as exc:  # noqa: BLE001 - as above
                self.faults.record("protect", exc, f"the event of track {obs.track_id}")
                continue
            payload = envelope("event.face", self.tid, body, ttl_s=self.runtime.current.mqtt.event_expiry_s)
            try:
                payload = self.protector.sign(payload)
            except ValueError as exc:  # a non-finite number: a bug upstream; the event is refused, not sent
                self.events["unsignable"] = self.events.get("unsignable", 0) + 1
                log.error("event for track %s refused: %s", obs.track_id, exc)
                continue
            if self.courier.queue(self.topics.event_face, payload):
                self.events[obs.decision] = self.events.get(obs.decision, 0) + 1
                if self.ha is not None:
                    self.ha.event(body)
                log.info("event %s queued (%s, track %s)", payload["id"], obs.decision, obs.track_id)
        self._emit_access()

    def _emit_access(self) -> None:
        """The door's decisions as signed event.access messages, through the outbox like face events."""
        if self.access is None:
            return
        for body in self.access.take_events():
            payload = envelope("event.access", self.tid, body, ttl_s=self.runtime.current.mqtt.event_expiry_s)
            try:
                payload = self.protector.sign(payload)
            except ValueError as exc:
                self.events["unsignable"] = self.events.get("unsignable", 0) + 1
                log.error("access event refused: %s", exc)
                continue
            if self.courier.queue(self.topics.event_access, payload):
                access = body["access"]
                self.events["access"] = self.events.get("access", 0) + 1
                log.info("access event %s queued (%s, %s)", payload["id"], access["decision"], access["mode"])

    # ---- status, health, config -------------------------------------------------------------

    def _status_body(self) -> dict[str, Any]:
        """What every status says besides its state (device.transport.availability signs and dates it)."""
        body: dict[str, Any] = {
            "software": device.__version__,
            "started_at": round(self.started, 3),
            "models": {name: e.sha256[:16] for name, e in self.store.entries.items()},
        }
        body["liveness"] = self._liveness_status()
        body.update(self._control_alarms())
        if self.identity is not None:
            body["gallery"] = self.identity.identity.summary()
        if self.access is not None:
            body["access"] = self.access.summary()
        return body

    def _liveness_status(self) -> dict[str, Any]:
        """The policy in force and whether the replay cue is calibrated on this terminal's camera."""
        calibration = getattr(self.pipeline, "calibration", None)
        out: dict[str, Any] = {"policy": self.pipeline.policy}
        if calibration is not None:
            out.update(calibration.status())
        return out

    def _control_alarms(self) -> dict[str, Any]:
        """What status and health must say loudly: unsafe control settings, a remote config set aside."""
        out: dict[str, Any] = {}
        warning = self.plane.describe_auth().get("warning")
        if warning:
            out["control_warning"] = warning
        if self.runtime.problem:
            out["config_problem"] = self.runtime.problem
        if self.pipeline.policy in LIVENESS_WARNINGS:
            out["liveness_warning"] = LIVENESS_WARNINGS[self.pipeline.policy]
        return out

    def status(self) -> dict[str, Any]:
        return {
            "state": "online",
            "software": device.__version__,
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "connected": self.link.connected,
            "frames": self.frames_done,
            "events": dict(self.events),
            "outbox": self.outbox.stats(),
            "config_version": self.runtime.version,
            "models": {name: e.sha256[:16] for name, e in self.store.entries.items()},
            "control": self.plane.describe_auth(),
            **self._control_alarms(),
            "identity": self.identity.status() if self.identity is not None else {"loaded": False},
            "access": self.access.status() if self.access is not None else None,
            "alarms": self.alarms.snapshot(
                self.capture.stats(),
                self.courier.stats(),
                combined(self.pipeline.stats().get("stage_failures"), self.faults.snapshot()),
            ),
            "prompts": self.prompts.describe(),
            "screen": self.screen.describe() if self.screen is not None else None,
            "liveness": self._liveness_status(),
        }

    def health(self) -> dict[str, Any]:
        stats = self.pipeline.stats()
        outbox = self.courier.stats()
        faults = combined(stats.get("stage_failures"), self.faults.snapshot())
        return {
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "fps": stats.get("fps"),
            "frames": self.frames_done,
            "source": {**self.source.stats(), **self.capture.stats()},
            "pipeline": stats,
            "events": dict(self.events),
            "outbox": outbox,
            "commands": self.commands.stats(),
            "loop": self.loop_times.summary(),
            "inbox_dropped": self.link.inbox_dropped,
            "publish_failed": dict(self.link.publish_failed),
            "cpu_temp_c": cpu_temperature_c(),
            "connected": self.link.connected,
            **self._control_alarms(),
            "session_taken_over": self.watch.taken_over,
            "config_desired_refused": dict(self.desired_refused),
            "prompts": self.prompts.describe(),
            "stage_failures": faults,
            **({"gate": self.gate.stats()} if self.identity is not None or self.access is not None else {}),
            "alarms": self.alarms.snapshot(self.capture.stats(), outbox, faults),
        }

    def _publish_health(self) -> None:
        body = self.health()  # also while offline: it raises and clears the alarms (and logs them)
        self.availability.refresh(self._status_body())  # what the next birth and will say
        if not self.link.connected:
            return
        payload = envelope("health", self.tid, body, ttl_s=self.runtime.current.service.health_interval_s * 3)
        try:
            payload = self.protector.sign(payload)
        except ValueError as exc:  # a non-finite number: a bug upstream; this health is not sent
            log.error("health not sent: %s", exc)
            return
        self.link.publish(self.topics.health, encode(payload), qos=0, meta=Meta.of(payload))
        if self.ha is not None:
            self.ha.health(body)

    def _publish_reported(self, extra: dict[str, Any] | None = None) -> None:
        body = {**self.runtime.report(), "applied": True, "problems": [], **(extra or {})}
        payload = envelope("config.reported", self.tid, body)
        self.link.publish(
            self.topics.config_reported, encode(payload), qos=1, retain=True, meta=Meta.of(payload)
        )

    def _on_desired(self, raw: bytes) -> None:
        desired = parse_desired(raw, self.runtime.current.mqtt.max_command_bytes)
        if desired.empty:
            return
        if desired.unreadable is not None:
            self._desired_refused(desired.unreadable, "; ".join(desired.problems))
            return
        if desired.version is not None and desired.version == self.runtime.version and not desired.problems:
            return  # the retained desired config we already run (re-delivered on every subscribe)
        try:
            # Authenticated first: config/reported (retained) answers the backend, never whoever published.
            self.plane.authorize(DESIRED_COMMAND, desired.signed_request())
        except CommandError as exc:
            self._desired_refused(exc.code, exc.message)
            return
        if desired.problems:
            self._publish_reported(
                {"applied": False, "problems": list(desired.problems), "desired_version": desired.version}
            )
            return
        try:
            result = self.runtime.apply(desired.config, desired.version)
        except (ConfigError, OSError) as exc:
            if isinstance(exc, ConfigError):
                problems = exc.problems
            else:  # a full or read-only state dir: the running config stays
                log.error("config/desired not applied: cannot store it: %s", exc)
                problems = [f"cannot store the config on the terminal: {exc.strerror or exc}"]
            self._publish_reported(
                {"applied": False, "problems": problems, "desired_version": desired.version}
            )
            return
        self.config_applied(result)

    def _desired_refused(self, code: str, why: str) -> None:
        """A config/desired nobody authenticated: counted (health config_desired_refused) and logged, no reply."""
        self.desired_refused[code] = self.desired_refused.get(code, 0) + 1
        log.warning("config/desired refused (%s), not answered: %s", code, why[:200])

    def config_applied(self, result: dict[str, Any]) -> None:
        cfg = self.runtime.current
        self.outbox.config = cfg.outbox
        self._next_health = 0.0
        self._publish_reported({"restart_required": result["restart_required"]})

    def _reload(self) -> None:
        self.lifecycle.reloading()
        previous = self.runtime.current
        try:
            restart = self.runtime.rebase(self.reload_base())
        except (ConfigError, OSError) as exc:
            log.error("SIGHUP: config not reloaded, the running one stays: %s", exc)
        else:
            self.config_applied({"restart_required": restart})
            changed = self.runtime.changed_keys(previous)
            live = [k for k in changed if k not in restart]
            # One line that says what the operator's edit did: what runs now, what waits for a restart.
            log.info(
                "SIGHUP: config reloaded: %s",
                "; ".join(
                    part
                    for part in (
                        f"applied now: {', '.join(live)}" if live else "",
                        f"after a restart: {', '.join(restart)} (systemctl restart faceonly)"
                        if restart
                        else "",
                    )
                    if part
                )
                or "no change",
                extra={"FACEONLY_RELOAD": ",".join(changed)},
            )
        self.lifecycle.ready("config reloaded")

    def describe_control(self) -> dict[str, Any]:
        return self.plane.describe_auth()

    def request_restart(self, reason: str) -> None:
        log.warning("restart requested: %s", reason)
        self.restart_requested = True

    # ---- stop -------------------------------------------------------------------------------

    def _shutdown(self) -> int:
        self.lifecycle.stopping()
        self.capture.stop()
        # The frame in flight is already finished; give the outbox a few seconds to drain.
        deadline = time.monotonic() + self.runtime.current.service.stop_flush_s
        while (
            time.monotonic() < deadline
            and (len(self.outbox) or self.courier.inflight)
            and self.link.connected
        ):
            self._service_io(0.1)
        self._service_io(0.0)  # replies to commands that arrived meanwhile
        self.outbox.save()
        if self.identity is not None:
            self.identity.close()
        if self.access is not None:
            self.access.close()
        self.gate.close()
        self.prompts.close()
        reason = "restart" if self.restart_requested else "stopped"
        delivered = self.link.stop(self.availability.status("offline", reason, time.time()), 2.0)
        log.info(
            "stopped; offline status %s; %d events left in the outbox",
            "sent" if delivered else "not sent",
            len(self.outbox),
        )
        return 0
