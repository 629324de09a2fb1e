"""Subjects and galleries: the central gallery, 1:N on it, enrolment, removal and the push to terminals.

The gallery is the identity tools' own signed update file (device/identity/operator.py): each change is
a signed delta on the latest version, kept in the store (so every instance of a group sees the same
one). Matching uses the terminal's matcher and the embedder's threshold curve from the model manifest,
with the same per-search false-accept target rule; an embedding made by another embedder is not
compared (no match). Pushes run on their own thread, never in the ingest loop: a terminal that comes
online with an older gallery version is caught up (the delta when it holds its base, else a snapshot).
"""

from __future__ import annotations

import base64
import logging
import math
import queue
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np

from device.backend.config import BackendConfig
from device.backend.store import Store
from device.contracts import ModelRef
from device.identity import operator as op
from device.identity.gallery import Subject, check_subject
from device.identity.matcher import Matcher
from device.identity.thresholds import CurveError, CurveSet, gallery_operating_point
from device.privacy.terminalseal import seal_for_terminal
from device.transport.client import ClientOptions

log = logging.getLogger(__name__)


class EnrolError(RuntimeError):
    """An enrolment or removal that did not happen; the message says why."""


def update_bytes(update: op.UpdateFile) -> bytes:
    """The update file's bytes (operator.write_update's format, through a private temp file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "update.fog"
        op.write_update(path, update)
        return path.read_bytes()


def update_from_bytes(data: bytes) -> op.UpdateFile:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "update.fog"
        path.write_bytes(data)
        return op.read_update(path)


class Subjects:
    def __init__(self, cfg: BackendConfig, store: Store, options: ClientOptions | None) -> None:
        """`options`: the broker to push galleries through; None: changes are stored, not pushed."""
        from device.infra.modelstore import ModelStore

        self.cfg, self.store, self.options = cfg, store, options
        entry = ModelStore(cfg.identity.models_dir).entry("embedder")
        self.embedder = ModelRef("embedder", entry.file, entry.sha256)
        try:
            self.curves: CurveSet | None = CurveSet.from_manifest(entry.info)
        except CurveError as exc:
            log.error("no central 1:N decisions: %s", exc)
            self.curves = None
        self._lock = threading.Lock()
        self.update: op.UpdateFile | None = None
        self.matcher = Matcher([], [])
        self.threshold = math.nan
        self.threshold_meaning: str | None = None  # the central 1:N setting in words (the page shows it)
        self._pushes: queue.Queue[str] = queue.Queue()
        self._pusher: threading.Thread | None = None
        self._load(store.latest_gallery())

    def _load(self, data: bytes | None) -> None:
        if data is None:
            return
        update = update_from_bytes(data)
        gallery = update.gallery(self.embedder)
        matcher = Matcher([s.id for s in gallery.subjects], [s.templates for s in gallery.subjects])
        threshold = math.nan  # fail closed without a curve for every template kind the gallery holds
        point = None
        if self.curves is not None and matcher.comparisons:
            try:
                point = gallery_operating_point(
                    self.curves,
                    self.cfg.identity.false_accept_per_search,
                    matcher.comparisons,
                    gallery.averaged,
                )
                threshold = point.threshold
            except CurveError as exc:
                log.error(
                    "no central 1:N decisions on gallery version %s: %s", update.manifest["version"], exc
                )
        with self._lock:
            self.update, self.matcher, self.threshold = update, matcher, threshold
            self.threshold_meaning = None if point is None else point.meaning()

    @property
    def version(self) -> int | None:
        return None if self.update is None else int(self.update.manifest["version"])

    def identify(self, embedding: np.ndarray, embedder_sha: str | None) -> tuple[str | None, float]:
        """Open-set 1:N on the central gallery; another embedder's embedding is never compared."""
        with self._lock:
            matcher, threshold = self.matcher, self.threshold
        if embedder_sha != self.embedder.sha256 or matcher.size == 0:
            return None, math.nan
        decision, _ = matcher.decide(embedding, threshold)
        return decision.subject, decision.score

    def tick(self) -> None:
        """Called by the ingest loop when idle: pick up a gallery version another instance stored."""
        latest = self.store.latest_gallery_version()
        if latest is not None and latest != self.version:
            self._load(self.store.latest_gallery())

    # ---- changes ---------------------------------------------------------------------------------

    def _signer(self):
        path = self.cfg.identity.gallery_key_file
        if path is None:
            raise EnrolError("no gallery key: set [identity] gallery_key_file (faceonly gallery keygen)")
        return op.load_gallery_signer(path)

    def change(
        self, add: tuple[Subject, ...] = (), remove: tuple[str, ...] = (), source: str = "photos"
    ) -> int:
        """Sign the next gallery version (a delta, or the first snapshot), store it, push it; its version."""
        signer = self._signer()
        with self._lock:
            base = self.update
        if base is None:
            if remove:
                raise EnrolError("there is no gallery yet to remove subjects from")
            update = op.snapshot(signer, list(add), 1, self.embedder)
        else:
            try:
                update = op.delta(signer, base, self.embedder, add, remove)
            except ValueError as exc:
                raise EnrolError(str(exc)) from None
        data = update_bytes(update)
        self.store.put_gallery(int(update.manifest["version"]), data)
        for subject in add:
            self.store.put_subject(subject.id, subject.display_name, source)
        self._load(data)
        self.push_all()
        return int(update.manifest["version"])

    def add_from_photos(self, photos: Path) -> tuple[int, int]:
        """(version, refused photos): one folder per subject, templates made as the terminal makes them."""
        from device.identity.builder import subjects_from_photos

        subjects, report, _ = subjects_from_photos(photos, self.cfg.identity.models_dir)
        if not subjects:
            raise EnrolError(f"{photos}: no subject has a usable photo")
        return self.change(tuple(subjects), source="photos"), sum(r.status != "ok" for r in report)

    def add_from_enrolment(self, subject: str, display_name: str | None, biometric: dict) -> int:
        """A subject from a terminal's `enroll` reply (its template, opened if sealed)."""
        from device.backend.keys import read_private_key
        from device.privacy.protector import decode_embedding
        from device.privacy.seal import SealError, open_sealed

        content = biometric
        if "sealed" in biometric:
            key = read_private_key(self.cfg.identity.private_key_file)
            if key is None:
                raise EnrolError("the template is sealed and the backend has no private key")
            try:
                content = open_sealed(key, {"biometric": biometric})
            except SealError as exc:
                raise EnrolError(str(exc)) from None
        if not isinstance(content.get("embedding"), str):
            raise EnrolError("the enroll reply carries no template")
        vector = decode_embedding(content["embedding"]).reshape(1, -1)
        try:
            made = check_subject(subject, display_name, vector)
        except (ValueError, TypeError) as exc:
            raise EnrolError(f"the template is not usable: {exc}") from None
        return self.change((made,), source="walk-up")

    def remove(self, subject: str) -> tuple[int, list[str]]:
        """Remove `subject` from the gallery (a signed delta to every terminal) and purge its records;
        (gallery version, event ids purged). A subject the gallery does not hold only has its records purged."""
        with self._lock:
            held = self.update is not None and any(
                s.id == subject for s in self.update.gallery(self.embedder).subjects
            )
        version = self.change(remove=(subject,)) if held else (self.version or 0)
        return version, self.store.remove_subject(subject)

    def enrol_at(self, terminal: str, subject: str, display_name: str | None, timeout_s: float) -> int:
        """Walk-up enrolment: `enroll` on `terminal`, then the delta with its template to every terminal."""
        pinned = self.store.terminal_keys().get(terminal)
        if pinned is None:
            raise EnrolError(f"terminal {terminal} is not registered (faceonly backend terminals add)")
        # The name is for the terminal's own screen: sealed to it, it never crosses the broker readable.
        args = {"subject": subject, "timeout_s": timeout_s} | (
            {"display_name_sealed": seal_for_terminal(base64.b64decode(pinned), display_name.encode())}
            if display_name
            else {}
        )
        requester = self._requester(terminal, timeout_s + 10)
        try:
            reply = requester.request("enroll", args)
        finally:
            requester.close()
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise EnrolError(f"enroll on {terminal}: {err.get('code')}: {err.get('message')}")
        return self.add_from_enrolment(subject, display_name, reply["result"]["biometric"])

    # ---- pushing ----------------------------------------------------------------------------------

    def _requester(self, terminal: str, timeout_s: float):
        from device.identity.push import Requester
        from device.transport.auth import read_signing_key
        from device.transport.client import new_client
        from device.transport.topics import Topics

        key_path = self.cfg.identity.command_key_file
        key = read_signing_key(key_path) if key_path is not None else None
        if self.options is None:
            raise EnrolError("no broker configured: nothing can be sent to a terminal")
        client = new_client(self.options, f"backend-cmd-{uuid.uuid4().hex[:12]}")
        client.connect(self.options.broker.host, self.options.broker.port)
        return Requester(client, Topics(self.cfg.mqtt.topic_prefix, terminal), timeout_s, key)

    def wait_pushed(self) -> None:
        """Until every queued push was tried."""
        self._pushes.join()

    def terminal_online(self, terminal: str, version: int | None) -> None:
        if self.options is not None and self.version is not None and version != self.version:
            self._pushes.put(terminal)
            self._ensure_pusher()

    def push_all(self) -> None:
        """Push the latest version to every online terminal (the others catch up when they come online)."""
        if self.options is None:
            return
        for t in self.store.terminals():
            if t.state == "online":
                self._pushes.put(t.id)
        self._ensure_pusher()

    def _ensure_pusher(self) -> None:
        if self._pusher is None or not self._pusher.is_alive():
            self._pusher = threading.Thread(target=self._push_loop, name="gallery-push", daemon=True)
            self._pusher.start()

    def _push_loop(self) -> None:
        while True:
            try:
                terminal = self._pushes.get(timeout=5)
            except queue.Empty:
                return
            try:
                self._push_one(terminal)
            finally:
                self._pushes.task_done()

    def _push_one(self, terminal: str) -> None:
        from device.identity.push import PushError, push

        update = self.update
        if update is None:
            return
        held = {t.id: t.gallery_version for t in self.store.terminals()}.get(terminal)
        if held == update.manifest["version"]:
            return
        if update.manifest.get("type") == "delta" and held != update.manifest.get("base_version"):
            # The terminal does not hold the delta's base (it was away, or new): send the whole gallery.
            subjects = list(update.gallery(self.embedder).subjects)
            update = op.snapshot(self._signer(), subjects, int(update.manifest["version"]), self.embedder)
        pinned = self.store.terminal_keys().get(terminal)
        if pinned is None:
            log.warning(
                "gallery not pushed to %s: its key is not registered (backend terminals add)", terminal
            )
            return
        requester = None
        try:
            requester = self._requester(terminal, 20)
            summary = push(requester, update, base64.b64decode(pinned))
            version = summary.get("version")
            if isinstance(version, int) and not isinstance(version, bool):
                self.store.terminal_gallery(terminal, version)
            log.info("gallery version %s pushed to %s", summary.get("version"), terminal)
        except (PushError, OSError, ValueError) as exc:
            log.warning("gallery push to %s failed (retried when it is next online): %s", terminal, exc)
        finally:
            if requester is not None:
                requester.close()
