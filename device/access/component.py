"""Door modes in the service: the loop-owned component that feeds the door's decider and acts on it.

Inputs arrive on the loop thread (faces after 1:N, QR codes decoded from the frame the loop holds) or through
small bounded queues from other threads (keypad entries from the door screen, codes from the badge reader);
a PIN's argon2id check runs on one worker thread so the frame loop never waits on it. Each decision becomes:
the gate's offer (a verified credential stands in for the face where the mode says so), the person's prompt
on the screen, the passage for anti-passback, a used-up visitor pass, and a signed `event.access` (codes and
ids only). Commands (signed on the control plane; the policy additionally signed by the backend's key):

access.sync / access.chunk / access.update / access.status (device/access/commands.py).
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from device.access import document as doc
from device.access.antipassback import Passages
from device.access.badge import BadgeReader, build_reader
from device.access.claims import Claims
from device.access.commands import register_commands
from device.access.decide import ClaimFirst, Credential, Decision, DoorDecider, Face, Outcome, Waiting
from device.access.outputs import event_body, prompt_for
from device.access.passes import UsedPasses
from device.access.policy import CREDENTIAL_ALONE, AccessPolicy
from device.access.qrscan import QrScanner
from device.config import Config
from device.contracts import FaceObservation, Frame, Prompt
from device.identity.claim import ClaimCheck, check_claim
from device.identity.feedback import rejection_reason
from device.identity.gate import Gate, GateDecision
from device.identity.runtime import Identity, MatchResult
from device.identity.store import open_box
from device.identity.transfer import Incoming
from device.transport.commands import CommandPlane

log = logging.getLogger(__name__)

INPUT_QUEUE = 16
QR_HOLD_S = 5.0  # the same QR code seen again within this is the same presentation, not a new one
DoorInfo = dict[str, Any]  # what the door screen needs to know of the door (mode, credentials, alternative)


class AccessComponent:
    def __init__(  # noqa: PLR0913 - the door's edges, each injected
        self,
        cfg: Config,
        policy_key: bytes,
        credential_key: bytes | None,
        identity: Identity | None,
        gate: Gate,
        prompt: Callable[[Prompt], None],
        unseal: Callable[[str], bytes],
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        acfg, state = cfg.access, Path(cfg.service.state_dir)
        self.door_id, self.per_claim = cfg.gate.door, cfg.identity.false_accept_per_claim
        self.policy_key, self.credential_key = policy_key, credential_key
        self.identity, self.gate, self._prompt, self.unseal = identity, gate, prompt, unseal
        self._wall, self._clock = wall, clock
        self._attempts, self._lockout = acfg.pin_attempts, acfg.pin_lockout_s
        box = open_box(cfg.identity.gallery_key_file or state / "gallery.key")
        self.store = doc.PolicyStore(acfg.policy_file or state / "access.sealed", box)
        self.incoming = Incoming(state / "access.incoming", box)
        self.problems: list[str] = []
        self.passages = self._passages(state / "passages.json")
        self.used: UsedPasses | None = None
        try:
            self.used = UsedPasses(state / "passes-used.json")
        except ValueError as exc:
            self.problems.append(f"{exc}: every visitor pass is refused until it is repaired or removed")
        self.scanner = QrScanner(acfg.qr_scan_hz) if acfg.qr_scan_hz > 0 else None
        self.keypad: queue.Queue[tuple[str, str]] = queue.Queue(INPUT_QUEUE)
        self.badges: queue.Queue[str] = queue.Queue(INPUT_QUEUE)
        self.reader: BadgeReader | None = None
        try:
            self.reader = build_reader(acfg.badge_reader)
        except OSError as exc:  # unplugged, or no permission: faces, PINs and QR codes still work
            self.problems.append(f"badge reader {acfg.badge_reader}: {exc.strerror or exc}")
            log.error("door: no badge reader: %s", exc.strerror or exc)
        if self.reader is not None:
            self.reader.start(self._badge_code)
        self._pins = ThreadPoolExecutor(1, "access-pin")
        self._pin_job: tuple[str, Future[bool]] | None = None
        self._seen_qr: dict[str, float] = {}
        self._direction: str | None = None  # In / Out from the screen, for the loop to apply
        self._events: list[dict[str, Any]] = []
        self.on_door: Callable[[DoorInfo | None], None] | None = None
        self.counts = {"granted": 0, "refused": 0, "dropped_inputs": 0}
        self.manifest: dict[str, Any] | None = None
        self.decider: DoorDecider | None = None
        self.claims: Claims | None = None
        try:
            loaded = self.store.load(policy_key)
        except doc.PolicyRefused as exc:
            self.problems.append(f"stored door policy refused: {exc}")
            loaded = None
        if loaded is not None:
            self._install(*loaded)

    def _passages(self, path: Path) -> Passages:
        """The anti-passback record; a damaged one is set aside (kept for the operator) and a new one begun:
        the terminal forgets who is in, at most one extra entry each within a period, which the backend's
        reconciliation reports (faceonly_backend/passback.py). Refusing to start would shut the door for all."""
        try:
            return Passages(path)
        except ValueError as exc:
            aside = path.with_name(f"{path.name}.damaged-{int(self._wall())}")
            path.rename(aside)
            self.problems.append(f"{exc}; set aside as {aside.name}, a new record was begun")
            log.error("door: %s; set aside as %s", exc, aside.name)
            return Passages(path)

    # ---- the policy --------------------------------------------------------------------------------
    def _install(self, manifest: dict[str, Any], policy: AccessPolicy) -> None:
        self.manifest = manifest
        self.claims = Claims(policy, self.credential_key, self._attempts, self._lockout, self._clock)
        self.decider = DoorDecider(
            policy, manifest["version"], self.door_id, self.passages, self.used, self._face_check,
            self._wall, self._clock,
        )  # fmt: skip
        if self.decider.door is None:
            log.error(
                "door policy v%s has no door %r: every attempt is refused", manifest["version"], self.door_id
            )
        self._tell_screen()

    def door_info(self) -> DoorInfo | None:
        decider = self.decider
        if decider is None or decider.door is None:
            return None
        door = decider.door
        alternative = None
        if door.mode not in CREDENTIAL_ALONE and door.alternative_door is not None:
            other = decider.policy.doors[door.alternative_door]
            alternative = other.label or door.alternative_door
        return {
            "mode": door.mode,
            "credentials": [] if door.mode == "face" else list(door.credentials),
            "keypad": decider.takes("pin") and self.credential_key is not None,
            "alternative_door": alternative,
            "direction": door.direction,
            "chosen": decider.direction if door.direction == "both" else None,
        }

    def _tell_screen(self) -> None:
        if self.on_door is not None:
            self.on_door(self.door_info())

    def apply_update(self, manifest: Any, body: bytes | bytearray) -> dict[str, Any]:
        checked = doc.check_manifest(manifest, self.policy_key)
        doc.check_newer(checked, self.version)
        policy = doc.read_body(checked, body)
        self.store.save(checked, body)
        self._install(checked, policy)
        self.problems = [p for p in self.problems if not p.startswith("stored door policy")]
        return self.summary()

    @property
    def version(self) -> int:
        return int(self.manifest["version"]) if self.manifest is not None else 0

    # ---- inputs ------------------------------------------------------------------------------------
    def wants_faces(self) -> bool:
        return self.decider is not None and self.decider.wants_faces()

    def enter_pin(self, number: str, pin: str) -> bool:
        """A keypad entry (any thread); False when the queue is full (the screen says so)."""
        try:
            self.keypad.put_nowait((number, pin))
        except queue.Full:
            self.counts["dropped_inputs"] += 1
            return False
        return True

    def choose_direction(self, direction: str) -> bool:
        """In / Out pressed on the screen of a `both` door (any thread; the loop applies it at its next tick)."""
        if direction not in ("in", "out"):
            return False
        self._direction = direction
        return True

    def _badge_code(self, code: str) -> None:  # the reader's thread
        try:
            self.badges.put_nowait(code)
        except queue.Full:
            self.counts["dropped_inputs"] += 1

    def scan(self, frame: Frame) -> None:
        """QR codes in the frame the loop holds (rate-limited); called before the frame is released."""
        if (
            self.scanner is None
            or self.decider is None
            or self.claims is None
            or not self.decider.takes("qr")
        ):
            return
        now = self._clock()
        self._seen_qr = {t: at for t, at in self._seen_qr.items() if now - at < QR_HOLD_S}
        for text in self.scanner.scan(frame):
            seen = text in self._seen_qr
            self._seen_qr[text] = now
            if not seen:
                self._credential(self.claims.qr(text))

    def faces(self, observations: list[FaceObservation], matches: list[MatchResult | None]) -> None:
        for obs, match in zip(observations, matches, strict=True):
            face = Face(
                track_id=obs.track_id,
                live=obs.decision == "accepted",
                reason=rejection_reason(obs.reasons) if obs.decision != "accepted" else None,
                subject=match.subject if match is not None else None,
                score=match.score if match is not None else math.nan,
                threshold=match.threshold if match is not None else math.nan,
                embedding=obs.embedding,
                probe=obs.probe,
                mirror=obs.mirror,
            )
            if self.decider is None:
                self._handle(self._no_policy(face))
                continue
            outcome = self.decider.face(face)
            if outcome is not None:
                self._handle(outcome, face)

    def tick(self) -> None:
        """Between frames: In / Out, keypad entries (the slow check on the worker), badge codes, claims timing
        out."""
        chosen, self._direction = self._direction, None
        if chosen is not None and self.decider is not None:
            self.decider.choose(chosen)
            self._tell_screen()
        if self._pin_job is not None and self._pin_job[1].done():
            number, job = self._pin_job
            self._pin_job = None
            if self.claims is not None:
                self._credential(self.claims.pin_result(number, job.result()))
        while self._pin_job is None and not self.keypad.empty():
            self._start_pin(*self.keypad.get_nowait())
        while not self.badges.empty():
            code = self.badges.get_nowait()
            if self.claims is not None and self.decider is not None and self.decider.takes("badge"):
                self._credential(self.claims.badge(code))
            else:  # a door that does not take badges says so (and where to go instead)
                self._credential(Credential("badge", None, "access.mode"))
        if self.decider is not None:
            timed_out = self.decider.tick()
            if timed_out is not None:
                self._handle(timed_out)

    def _start_pin(self, number: str, pin: str) -> None:
        claims, decider = self.claims, self.decider
        if claims is None or decider is None or not decider.takes("pin"):
            self._credential(Credential("pin", None, "access.mode"))
        elif claims.locked(number):
            self._credential(Credential("pin", None, "access.pin_locked"))
        elif claims.pin_target(number) is None:
            self._credential(claims.pin_result(number, False))
        else:
            self._prompt(prompt_for("access.checking", 0, self._wall()))
            self._pin_job = (number, self._pins.submit(claims.check_pin, number, pin))

    def _credential(self, cred: Credential) -> None:
        if self.decider is None:
            self._handle(self._no_policy(None, cred))
            return
        self._handle(self.decider.credential(cred))

    def _no_policy(self, face: Face | None, cred: Credential | None = None) -> Decision:
        return Decision(
            door=self.door_id, mode="face", direction=None, granted=False, reason="access.no_policy",
            subject=None, credential=cred.kind if cred is not None else None,
            factors={cred.kind: "failed"} if cred is not None else {"face": "failed"},
            track_id=face.track_id if face is not None else None, wall=self._wall(), decided_at=self._clock(),
        )  # fmt: skip

    def _face_check(self, subject: str, face: Face | None) -> ClaimCheck | None:
        """1:1 of the face against the claimed subject (None: no such subject); a single-view probe at its
        own threshold, its mirror image embedded only on a close call (device.identity.claim)."""
        gallery = self.identity.gallery if self.identity is not None else None
        found = gallery.subject(subject) if gallery is not None else None
        if found is None or self.identity is None:
            return None
        if face is None:
            return check_claim(self.identity.curves, found, None, self.per_claim)
        return check_claim(
            self.identity.curves, found, face.embedding, self.per_claim, face.probe, face.mirror
        )

    # ---- outputs -----------------------------------------------------------------------------------
    def _handle(self, outcome: Outcome, face: Face | None = None) -> None:
        now = self._wall()
        if isinstance(outcome, Waiting):
            self._prompt(prompt_for("access.look", 0, now, subject=outcome.subject))
            return
        if isinstance(outcome, ClaimFirst):
            self._prompt(prompt_for("access.claim_first", outcome.track_id, now))
            return
        if self.decider is not None:
            self.decider.choose(None)  # In / Out holds for one attempt
            self._tell_screen()
        gate = "shut"
        if outcome.granted:
            gate = self._open(outcome)
        self.counts["granted" if outcome.granted else "refused"] += 1
        self._prompt(
            prompt_for(
                outcome.outcome,
                outcome.track_id or 0,
                now,
                subject=outcome.subject if outcome.granted else None,
                reason=outcome.reason if outcome.outcome == "result.rejected" else None,
            )
        )
        self._events.append(event_body(outcome, gate, self.version))

    def _open(self, decision: Decision) -> str:
        """Offer a granted decision to the gate: "opened", "none" (no gate) or "dropped"."""
        assert decision.subject is not None
        token = decision.token
        if decision.credential == "pass" and token is not None and self.used is not None:
            self.used.use(token, decision.wall)  # before the gate: a crash may lose an opening, never a use
        passed = tuple(k for k, v in decision.factors.items() if v == "passed")
        score = decision.score if decision.score is not None else math.nan
        offered = GateDecision(
            decision.subject, score, "face" in passed, decision.decided_at, decision.mode, passed
        )
        if not self.gate.offer(offered):
            return "dropped"
        if decision.direction is not None:
            self.passages.record(decision.subject, decision.direction, decision.wall)
        return "none" if self.gate.kind == "none" else "opened"

    def take_events(self) -> list[dict[str, Any]]:
        """The event.access bodies decided since the last call (the service signs and queues them)."""
        events, self._events = self._events, []
        return events

    # ---- commands and status -----------------------------------------------------------------------
    def register(self, plane: CommandPlane) -> None:
        register_commands(self, plane)

    def summary(self) -> dict[str, Any]:
        """The policy in force and this door's part of it (status, birth, command replies): no credential."""
        out: dict[str, Any] = {"loaded": self.manifest is not None, "door": self.door_id}
        if self.manifest is not None and self.decider is not None:
            policy = self.decider.policy
            out.update(
                {
                    "version": self.version,
                    "people": len(policy.people),
                    "doors": len(policy.doors),
                    "timezone": policy.site.timezone,
                    "door_policy": self.door_info(),
                    "direction": self.decider.door.direction if self.decider.door is not None else None,
                }
            )
        problems = list(self.problems)
        if self.manifest is None:
            problems.append("no door policy yet: every attempt at this door is refused")
        elif self.decider is not None and self.decider.door is None:
            problems.append(f"the door policy has no door {self.door_id!r}: every attempt is refused")
        if problems:
            out["problems"] = problems
        return out

    def status(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "counts": dict(self.counts),
            "claim_pending": self.decider is not None and self.decider.pending is not None,
            "qr": self.scanner.stats() if self.scanner is not None else None,
            "badge": self.reader.stats() if self.reader is not None else None,
        }

    def close(self) -> None:
        if self.reader is not None:
            self.reader.stop()
        self._pins.shutdown(wait=True, cancel_futures=True)
