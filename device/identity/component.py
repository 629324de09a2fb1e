"""On-device identity in the service: 1:N per observation, feedback, the gate, enrolment, and its commands.

The service loop owns it (one thread). Commands (all state-changing ones signed on the control plane;
gallery updates additionally signed by the backend's gallery key, checked here):

- gallery.sync {manifest}: start or resume a chunked transfer; reply: transfer id, missing chunks.
- gallery.chunk {transfer, index, data, proof}: one chunk, sealed to this terminal (device.privacy.terminalseal:
  display names and templates never cross the broker readable), and its Merkle inclusion proof, checked on the
  opened bytes; the last one applies the update (on a worker thread: its reply comes once the gallery is stored
  and in use; gallery commands answer busy meanwhile).
- gallery.add / gallery.remove {manifest, body}: a small delta in one message (body sealed to this terminal);
  add may only add or replace subjects, remove may only remove them.
- gallery.list {ids?}: version, count, model, the threshold in force (ids on request).
- enroll {subject, display_name_sealed?, timeout_s}: answered later, with the template or the reason; the name
  (for the door screen) comes sealed to this terminal, never in the clear.
- subject.purge {subject}: erase the subject's templates and every queued event naming it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

from nacl.bindings import crypto_box_SEALBYTES
from pydantic import BaseModel, ConfigDict, Field

from device.config import Config
from device.contracts import FaceObservation, ModelRef, Prompt, Protector
from device.identity import gallery as gal
from device.identity.enrolment import Enrolment, Outcome, check_enrol_args
from device.identity.feedback import enrolment_prompt, outcome_prompt
from device.identity.gate import Gate, GateDecision
from device.identity.merkle import MAX_PROOF
from device.identity.operator import read_public_key
from device.identity.runtime import Busy, Identity, MatchResult, load_curves
from device.identity.transfer import MAX_CHUNK_BYTES, TransferError
from device.transport.commands import (
    BAD_REQUEST,
    BUSY,
    FAILED,
    CommandError,
    CommandPlane,
    Deferred,
    parse_args,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

REFUSED: Final = "refused"  # error code of a refused gallery update; details.reason says which refusal


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Sync(_Strict):
    manifest: dict[str, Any]


class _Chunk(_Strict):
    transfer: str = Field(max_length=64)
    index: int = Field(ge=0, le=1_000_000)
    data: str = Field(max_length=(MAX_CHUNK_BYTES + crypto_box_SEALBYTES) * 4 // 3 + 8)
    # Sibling hashes (hex) from the chunk up to the manifest's chunk_root; empty for a schema 1 manifest.
    proof: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field([], max_length=MAX_PROOF)


class _Inline(_Strict):
    manifest: dict[str, Any]
    body: str


class _List(_Strict):
    ids: bool = False


class _Purge(_Strict):
    subject: str = Field(pattern=gal.ID_PATTERN.pattern)


def build_identity(config: Config, embedder: ModelRef, embedder_info: dict) -> Identity | None:
    """The identity state when a gallery key is configured (ValueError/KeyFileError on a bad key file)."""
    ident = config.identity
    if ident.gallery_public_key_file is None:
        return None
    state_dir = Path(config.service.state_dir)
    return Identity(
        embedder,
        load_curves(embedder_info),
        read_public_key(ident.gallery_public_key_file),
        ident.gallery_file or state_dir / "gallery.sealed",
        ident.gallery_key_file or state_dir / "gallery.key",
        ident.false_accept_per_search,
        ident.top_k,
    )


class IdentityComponent:
    def __init__(
        self,
        identity: Identity,
        gate: Gate,
        prompt: Callable[[Prompt], None],
        enrol_reply: Callable[[Any, dict[str, Any] | CommandError], None],
        protector: Protector,
        purge_events: Callable[[str], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`protector`: the terminal's keys at work, for the enroll reply's template and for opening what the
        backend sealed to this terminal."""
        self.identity, self.gate, self._prompt, self._protector = identity, gate, prompt, protector
        self._enrol_reply, self._purge_events = enrol_reply, purge_events
        self._clock = clock
        self._enrolment: tuple[Enrolment, Any] | None = None  # (state, the pending reply's handle)
        self._apply_reply: Any = None  # the reply handle of the chunk that completed the applying update
        self._awaiting_apply_reply = False
        self.counts = {"matched": 0, "unknown": 0, "gate_opened": 0, "enrolments": 0}
        # Under a door policy (device/access) the door decides what a match means: gate and prompts are its.
        self.door: Callable[[list[FaceObservation], list[MatchResult | None]], None] | None = None

    @property
    def enrolling(self) -> bool:
        return self._enrolment is not None

    # ---- per observation -------------------------------------------------------------------

    def observe(self, observations: list[FaceObservation]) -> list[MatchResult | None]:
        """The match of each observation (None: no gallery or not accepted); feedback and gate as a side
        effect; an enrolment in progress takes its face first (and that face is not identified).

        An observation whose decision needed the flip-averaged probe (a close call, or a template for an
        enrolment) is replaced IN the list by its flip-averaged form, so what is sent is what decided."""
        if self._enrolment is not None:
            enrolment, handle = self._enrolment
            observations[:] = [o.with_flip() if o.decision == "accepted" else o for o in observations]
            outcome = enrolment.offer(observations)
            if outcome is not None:
                self._finish_enrolment(outcome, handle)
                return [None for _ in observations]
        out: list[MatchResult | None] = []
        for i, obs in enumerate(observations):
            match = None
            if obs.decision == "accepted":
                match = self.identity.identify(obs.embedding, obs.probe, obs.mirror)
                if match is not None and match.probe == "flip" and obs.probe != "flip":
                    obs = observations[i] = obs.with_flip()  # the mirror ran already: no second invoke
            out.append(match)
            if match is not None and match.subject is None:
                self.counts["unknown"] += 1
            elif match is not None and match.subject is not None:
                self.counts["matched"] += 1
                decided = GateDecision(match.subject, match.score, obs.decision == "accepted", self._clock())
                if self.door is None and self.gate.offer(decided):
                    self.counts["gate_opened"] += 1
            if self.door is None:
                self._prompt(outcome_prompt(obs, match, identifies=True))
        if self.door is not None:
            self.door(observations, out)
        return out

    def display_name(self, subject: str) -> str | None:
        """The name the door screen shows for `subject`: the pending enrolment's, else the gallery's."""
        if self._enrolment is not None and self._enrolment[0].request.subject == subject:
            return self._enrolment[0].request.display_name
        found = self.identity.gallery.subject(subject) if self.identity.gallery is not None else None
        return found.display_name if found is not None else None

    def tick(self) -> None:
        self._finish_apply()
        if self._enrolment is not None:
            enrolment, handle = self._enrolment
            outcome = enrolment.expired(self._clock())
            if outcome is not None:
                self._finish_enrolment(outcome, handle)

    def _finish_enrolment(self, outcome: Outcome, handle: Any) -> None:
        enrolment, _ = self._enrolment or (None, None)
        self._enrolment = None
        if enrolment is None:
            return
        req = enrolment.request
        if not outcome.ok or outcome.observation is None:
            self._prompt(
                enrolment_prompt("enrol.failed", req.subject, time.time(), reason=f"enrol.{outcome.reason}")
            )
            self._enrol_reply(
                handle,
                CommandError(
                    FAILED, f"enrolment of {req.subject}: {outcome.reason}", {"reason": outcome.reason}
                ),
            )
            return
        obs = outcome.observation
        self.counts["enrolments"] += 1
        self._prompt(enrolment_prompt("enrol.done", req.subject, obs.last_seen, obs.track_id))
        self._enrol_reply(
            handle,
            {
                "subject": req.subject,
                "biometric": self._protector.enrolment_fields(obs),
                "quality": {k: float(v) for k, v in obs.quality.items()},
                "liveness": {k: float(v) for k, v in obs.liveness.items()},
                "note": "the terminal does not add it to its gallery: the backend signs the delta that does",
            },
        )

    # ---- commands ----------------------------------------------------------------------------

    def start_enrolment(self, args: dict[str, Any], handle: Any) -> None:
        """Begin an enrolment answered later through `enrol_reply(handle, ...)`; CommandError now if not."""
        if self._enrolment is not None:
            raise CommandError(FAILED, "an enrolment is already in progress")
        try:
            request = check_enrol_args(self._opened_name(args), self._clock(), gal.ID_PATTERN)
        except ValueError as exc:
            raise CommandError(BAD_REQUEST, str(exc)) from None
        self._enrolment = (Enrolment(request), handle)
        self._prompt(enrolment_prompt("enrol.started", request.subject, time.time()))

    def _opened_name(self, args: dict[str, Any]) -> dict[str, Any]:
        """The enroll arguments with the sealed display name opened (ValueError when it cannot be); a name in
        the clear is refused: it would have crossed the broker readable."""
        if "display_name" in args:
            raise ValueError("display_name must come sealed to this terminal (display_name_sealed)")
        sealed = args.get("display_name_sealed")
        if sealed is None:
            return args
        if not isinstance(sealed, str) or len(sealed) > 1024:
            raise ValueError("display_name_sealed must be base64 text of a sealed box")
        try:
            name = self._protector.unseal(sealed).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("display_name_sealed does not hold UTF-8 text") from None
        return {k: v for k, v in args.items() if k != "display_name_sealed"} | {"display_name": name}

    def _opened(self, sealed: str, what: str) -> bytes:
        try:
            return self._protector.unseal(sealed)
        except ValueError as exc:
            raise gal.GalleryRefused("not_sealed", f"{what}: {exc}") from None

    def attach_reply(self, handle: Any) -> None:
        """The deferred reply's address, known once the command plane has parsed the request (right after
        the handler returned Deferred: the last gallery chunk, or enroll)."""
        if self._awaiting_apply_reply:
            self._awaiting_apply_reply = False
            self._apply_reply = handle
        elif self._enrolment is not None and self._enrolment[1] is None:
            self._enrolment = (self._enrolment[0], handle)

    def close(self) -> None:
        self.identity.close()
        self._finish_apply()  # the gate is the service's: it closes it

    def _refusing(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (gal.GalleryRefused, TransferError, Busy) as exc:
            raise self._refusal(exc) from None

    def _refusal(self, exc: Exception) -> CommandError:
        if isinstance(exc, gal.GalleryRefused):
            return CommandError(REFUSED, str(exc), {"reason": exc.reason, "gallery": self.identity.summary()})
        if isinstance(exc, Busy):
            return CommandError(BUSY, str(exc))
        return CommandError(BAD_REQUEST if isinstance(exc, TransferError) else FAILED, str(exc))

    def _finish_apply(self) -> None:
        outcome = self.identity.finish_apply()
        if outcome is None:
            return
        handle, self._apply_reply = self._apply_reply, None
        if isinstance(outcome, Exception):
            log.warning("gallery update not applied: %s", outcome)
            self._enrol_reply(handle, self._refusal(outcome))
        else:
            log.info("gallery version %s applied", outcome["gallery"].get("version"))
            self._enrol_reply(handle, outcome)

    def register(self, plane: CommandPlane) -> None:
        """Its commands on the command plane: only gallery.list is read-only (it may come unsigned); gallery.chunk
        is signed but replay-safe."""
        ident = self.identity

        def sync(args: dict[str, Any]) -> dict[str, Any]:
            return self._refusing(lambda: ident.sync(parse_args(_Sync, args).manifest))

        def chunk(args: dict[str, Any]) -> dict[str, Any] | Deferred:
            req = parse_args(_Chunk, args)
            out = self._refusing(
                lambda: ident.chunk(req.transfer, req.index, self._opened(req.data, "chunk data"), req.proof)
            )
            if out is not None:
                return out
            self._apply_reply = None  # the last chunk: answered once the update is applied (tick)
            self._awaiting_apply_reply = True
            return Deferred()

        def inline(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
            def handler(args: dict[str, Any]) -> dict[str, Any]:
                req = parse_args(_Inline, args)

                def apply() -> dict[str, Any]:
                    body = self._opened(req.body, f"gallery.{kind} body")
                    if req.manifest.get("type") != "delta":
                        raise gal.GalleryRefused("malformed", f"gallery.{kind} takes a delta")
                    subjects, remove = gal.decode_body(body) if body[:4] == gal.MAGIC else ([], ())
                    if (kind == "add" and remove) or (kind == "remove" and subjects):
                        raise gal.GalleryRefused("malformed", f"gallery.{kind} may only {kind} subjects")
                    return {"gallery": ident.apply_update(req.manifest, body)}

                return self._refusing(apply)

            return handler

        def listing(args: dict[str, Any]) -> dict[str, Any]:
            return ident.summary(ids=parse_args(_List, args).ids)

        def purge(args: dict[str, Any]) -> dict[str, Any]:
            subject = parse_args(_Purge, args).subject
            erased = self._refusing(lambda: ident.purge(subject))
            return {
                "subject": subject,
                "templates_erased": erased,
                "events_erased": self._purge_events(subject),
                "gallery": ident.summary(),
            }

        plane.register("gallery.sync", sync)
        # A chunk is checked against the signed manifest and stored once: sending it again does nothing more.
        plane.register("gallery.chunk", chunk, replay_safe=True)
        plane.register("gallery.add", inline("add"))
        plane.register("gallery.remove", inline("remove"))
        plane.register("gallery.list", listing, read_only=True)
        plane.register("subject.purge", purge)

    def status(self) -> dict[str, Any]:
        return {
            **self.identity.summary(),
            "applying_update": self.identity.applying is not None,
            "gate": self.gate.kind,
            "counts": {**self.counts, "gate_dropped": self.gate.dropped},
        }
