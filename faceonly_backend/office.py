"""The back office: the parts an operator runs a site with, over one store, built once per process.

Ingest (faceonly_backend/ingest.py, service.py) only records and reads the central gallery; everything here is
driven by people (the page, the CLI) or by the clock (retention), on their own threads, never in the ingest
loop.
"""

from __future__ import annotations

import logging
import threading
import time

from device.transport.client import ClientOptions
from faceonly_backend.accounts import Accounts
from faceonly_backend.attendance import AttendanceBook
from faceonly_backend.audit import AuditLog
from faceonly_backend.config import BackendConfig
from faceonly_backend.consent import ConsentBook
from faceonly_backend.corrections import Corrections
from faceonly_backend.db import DATABASE_ERRORS
from faceonly_backend.enrol import Enrolment
from faceonly_backend.gallery_authority import CentralGallery
from faceonly_backend.live import LiveView
from faceonly_backend.people import People
from faceonly_backend.purges import PurgeBook
from faceonly_backend.pusher import Pusher
from faceonly_backend.removal import Removal
from faceonly_backend.store import Store

log = logging.getLogger(__name__)


class BackOffice:
    def __init__(
        self, cfg: BackendConfig, store: Store, options: list[ClientOptions] | None, live: LiveView
    ) -> None:
        """`options`: the broker (a cluster's nodes, tried in turn) to reach terminals through (None: changes
        are stored, not sent)."""
        self.cfg, self.store, self.live = cfg, store, live
        self.audit = AuditLog(store)
        self.accounts = Accounts(store, cfg.http.session_hours)
        self.consents = ConsentBook(store, cfg.site)
        self.people = People(store)
        self.gallery = CentralGallery(cfg, store)
        self.purges = PurgeBook(store)
        self.pusher = Pusher(cfg, store, self.gallery, self.purges, options)
        self.enrolment = Enrolment(self)
        self.removal = Removal(self)
        self.corrections = Corrections(self)
        self.attendance = AttendanceBook(self)
        self._next_sweep = 0.0
        self._sweeping: threading.Thread | None = None

    def tick(self, now: float | None = None) -> None:
        """From the ingest loop when idle: another instance's gallery, and the retention timers (on a thread
        of their own: a purge signs a gallery and waits for nothing, but may take a while on a large one)."""
        self.gallery.tick()
        mono = time.monotonic() if now is None else now
        if mono < self._next_sweep or (self._sweeping is not None and self._sweeping.is_alive()):
            return
        self._next_sweep = mono + self.cfg.retention.check_interval_s
        self._sweeping = threading.Thread(target=self._sweep, name="retention", daemon=True)
        self._sweeping.start()

    def _sweep(self) -> None:
        try:
            self.removal.sweep()
        except DATABASE_ERRORS as exc:  # retried at the next interval
            log.warning("retention check failed (retried): %s", exc)
        except Exception as exc:  # noqa: BLE001 - the timers must keep running whatever one subject's purge raised
            log.error("retention check failed (retried): %s: %s", type(exc).__name__, exc)
