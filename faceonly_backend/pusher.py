"""Bringing terminals in line with the back office, on a thread of its own (never in the ingest loop).

For a terminal (when it comes online, after a change, and at every retention check while it lags): first
every purge it has not confirmed (the signed `subject.purge`: its templates and every queued event naming the
subject erased; the counts in its reply are the purge receipt), then the gallery it lacks (the delta when it
holds its base, else a snapshot; a terminal holding a lab gallery the backend has not yet passed is adopted,
faceonly_backend/gallery_authority.py). Commands are signed with the command key.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import uuid
from typing import TYPE_CHECKING, Any

from device.transport.client import ClientOptions
from faceonly_backend.config import BackendConfig
from faceonly_backend.gallery_authority import CentralGallery, GalleryError
from faceonly_backend.store import Store, Terminal

if TYPE_CHECKING:
    from faceonly_backend.purges import PurgeBook

log = logging.getLogger(__name__)
PUSH_TIMEOUT_S = 20.0


class TerminalError(RuntimeError):
    """A terminal that could not be reached or refused; the message says which and why."""


class Pusher:
    def __init__(
        self,
        cfg: BackendConfig,
        store: Store,
        gallery: CentralGallery,
        purges: PurgeBook,
        options: list[ClientOptions] | None,
    ) -> None:
        """`options`: the broker (a cluster's nodes, tried in turn) to reach terminals through; None: changes
        are stored, not sent."""
        self.cfg, self.store, self.gallery, self.purges, self.options = cfg, store, gallery, purges, options
        self._jobs: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    # ---- talking to one terminal -----------------------------------------------------------------

    def terminal_key(self, terminal: str) -> bytes:
        """The terminal's pinned public key: what the backend seals its gallery data and names to."""
        pinned = self.store.terminal_keys().get(terminal)
        if pinned is None:
            raise TerminalError(f"terminal {terminal} is not registered (faceonly backend terminals add)")
        return base64.b64decode(pinned)

    def request(self, terminal: str, name: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """One signed command and its reply; TerminalError when there is none or it is an error."""
        from device.identity.push import PushError, Requester
        from device.transport.auth import read_signing_key
        from device.transport.client import connect_first
        from device.transport.topics import Topics

        if self.options is None:
            raise TerminalError("no broker configured: nothing can be sent to a terminal")
        key_path = self.cfg.identity.command_key_file
        key = read_signing_key(key_path) if key_path is not None else None
        topics = Topics(self.cfg.mqtt.topic_prefix, terminal)
        try:
            client = connect_first(self.options, f"backend-cmd-{uuid.uuid4().hex[:12]}")
            requester = Requester(client, topics, timeout_s, key, self.cfg.mqtt.subscription_qos)
        except OSError as exc:
            raise TerminalError(f"cannot reach the broker: {exc}") from None
        try:
            reply = requester.request(name, args)
        except PushError as exc:
            raise TerminalError(f"{name} on {terminal}: {exc}") from None
        finally:
            requester.close()
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise TerminalError(f"{name} on {terminal}: {err.get('code')}: {err.get('message')}")
        return reply.get("result") or {}

    def _push(self, terminal: str, update) -> dict[str, Any]:
        from device.identity.push import PushError, Requester, push
        from device.transport.auth import read_signing_key
        from device.transport.client import connect_first
        from device.transport.topics import Topics

        assert self.options is not None
        key_path = self.cfg.identity.command_key_file
        key = read_signing_key(key_path) if key_path is not None else None
        client = connect_first(self.options, f"backend-push-{uuid.uuid4().hex[:12]}")
        topics = Topics(self.cfg.mqtt.topic_prefix, terminal)
        requester = Requester(client, topics, PUSH_TIMEOUT_S, key, self.cfg.mqtt.subscription_qos)
        try:
            return push(requester, update, self.terminal_key(terminal))
        except PushError as exc:
            raise TerminalError(str(exc)) from None
        finally:
            requester.close()

    # ---- the queue -------------------------------------------------------------------------------

    def sync(self, terminal: str) -> None:
        if self.options is None:
            return
        self._jobs.put(terminal)
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="backend-sync", daemon=True)
                self._thread.start()

    def sync_online(self, lagging_only: bool = False) -> None:
        """Queue every online terminal (or only those with a purge unconfirmed or an older gallery)."""
        pending = self.purges.pending_terminals() if lagging_only else set()
        for t in self.store.terminals():
            if t.state != "online":
                continue
            if not lagging_only or t.id in pending or self._lags(t):
                self.sync(t.id)

    def _lags(self, t: Terminal) -> bool:
        return self.gallery.version is not None and (
            t.gallery_version != self.gallery.version or t.gallery_sha256 not in (None, self.gallery.sha256)
        )

    def wait(self) -> None:
        """Until every queued job was tried."""
        self._jobs.join()

    def _loop(self) -> None:
        while True:
            try:
                terminal = self._jobs.get(timeout=5)
            except queue.Empty:
                return
            try:
                self._sync_one(terminal)
            except Exception as exc:  # noqa: BLE001 - one terminal's failure must not stop the others' jobs
                log.warning("bringing %s in line failed (retried later): %s", terminal, exc)
            finally:
                self._jobs.task_done()

    def _sync_one(self, terminal: str) -> None:
        for purge_id, subject in self.purges.pending(terminal):
            try:
                result = self.request(terminal, "subject.purge", {"subject": subject}, PUSH_TIMEOUT_S)
            except TerminalError as exc:
                self.purges.failed(purge_id, terminal, str(exc))
                log.warning("purge of %s on %s not confirmed (retried): %s", subject, terminal, exc)
                return  # the gallery waits too: a terminal that does not answer gets nothing half done
            self.purges.confirm(purge_id, terminal, result)
            log.info("purge of %s confirmed by %s", subject, terminal)
        self._catch_up(terminal)

    def _catch_up(self, terminal: str) -> None:
        if self.gallery.version is None:
            return
        # What it holds now, from itself (its retained status may predate this backend's subscription).
        held = self.request(terminal, "gallery.list", {}, PUSH_TIMEOUT_S)
        version, sha = held.get("version"), held.get("sha256")
        authority = held.get("authority") or "lab"
        if isinstance(version, int) and not isinstance(version, bool):
            self.store.terminal_gallery(terminal, version, sha, authority)
        else:
            version = None
        ours: int = self.gallery.version
        lab_ahead = version is not None and (
            version > ours or (version == ours and sha != self.gallery.sha256)
        )
        if authority != "backend" and lab_ahead:
            assert version is not None
            adopted = self.gallery.adopt(version)
            log.info(
                "%s holds a lab gallery (version %d): this backend's gallery is signed again as version %d",
                terminal,
                version,
                adopted,
            )
            self.sync_online()  # every other terminal needs the adopted version too
        try:
            update = self.gallery.for_terminal(version, sha)
        except GalleryError as exc:
            log.warning("no gallery for %s: %s", terminal, exc)
            return
        if update is None:
            return
        summary = self._push(terminal, update)
        confirmed = summary.get("version")
        if isinstance(confirmed, int) and not isinstance(confirmed, bool):
            self.store.terminal_gallery(terminal, confirmed, summary.get("sha256"), summary.get("authority"))
        log.info("gallery version %s pushed to %s", confirmed, terminal)
