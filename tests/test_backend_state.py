"""What the backend believes about a terminal: only its signed state, never older than what it holds, never
from the future; and the page renders whatever state is stored.

Ingest's verdicts on status and health (real Ed25519 signatures), a property test of the store's ordering
(any arrival order of signed statuses leaves the newest by (created_at, offline after online); a repeat is
`same`, an older one `stale`), and the page in headless Chromium over a store holding hostile state.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from device.privacy.signing import Signer
from device.transport.availability import Availability
from device.transport.envelope import envelope
from faceonly_backend.ingest import Ingest, Quarantined, TerminalUpdate
from faceonly_backend.store import Store
from tests.backend_parts import BackendProc, public_key, register
from tests.broker import Broker
from tests.test_backend_page import _chromium, _chromium_run

SKEW = 30.0


@pytest.fixture
def signer() -> Signer:
    return Signer(SigningKey.generate())


def _ingest(signer: Signer) -> Ingest:
    pinned = {"t1": public_key(signer)}
    return Ingest("faceonly", lambda: pinned, None, None)


def _status(state: str = "online", *, at: float | None = None, version: object = 3, **extra) -> dict:
    body = {"state": state, "software": "x", "started_at": 1.0, "models": {}, "gallery": {"version": version}}
    return envelope("status", "t1", {**body, **extra}, now=at)


def _health(*, at: float | None = None, ttl_s: float = 30, **extra) -> dict:
    body = {
        "uptime_s": 5.0,
        "fps": 12.5,
        "outbox": {"depth": 2},
        "cpu_temp_c": None,
        "events": {"accepted": 1},
    }
    return envelope("health", "t1", {**body, **extra}, ttl_s=ttl_s, now=at)


def _judge(ingest: Ingest, what: str, payload: dict | bytes, now: float | None = None):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ingest.handle(f"faceonly/v1/dev/t1/{what}", raw, time.time() if now is None else now)


def test_only_signed_present_state_is_believed(signer: Signer) -> None:
    ingest = _ingest(signer)
    forged_online = _status(version=999999)  # what an attacker with publish rights sends
    other = Signer(SigningKey.generate()).sign(_status())
    tampered = signer.sign(_status())
    tampered["gallery"]["version"] = 999999
    cases = {
        "unsigned": [("status", forged_online), ("health", _health())],
        "forged": [("status", other), ("status", tampered)],
        "future": [
            ("status", signer.sign(_status(at=time.time() + 3600))),
            ("health", signer.sign(_health(at=1e18))),
        ],
        "malformed": [
            ("status", signer.sign(_status("sleeping"))),
            ("status", signer.sign(_status(version="999999"))),
            ("status", signer.sign(_status(version=True))),
            ("health", signer.sign(_health(fps="fast"))),
            ("health", signer.sign(_health(at=-5.0))),
            ("health", b"[]"),
        ],
        "expired": [("health", signer.sign(_health(at=time.time() - 120, ttl_s=30)))],
        "payload.too_deep": [("status", b'{"state": "online", "x": ' + b"[" * 600 + b"]" * 600 + b"}")],
    }
    for reason, messages in cases.items():
        for what, payload in messages:
            verdict = _judge(ingest, what, payload)
            assert isinstance(verdict, Quarantined) and verdict.reason == reason, (reason, what, verdict)
    # Within the allowed skew a terminal's clock may run ahead.
    ahead = _judge(ingest, "status", signer.sign(_status(at=time.time() + SKEW / 2)))
    assert isinstance(ahead, TerminalUpdate) and ahead.state == "online" and ahead.gallery_version == 3
    health = _judge(ingest, "health", signer.sign(_health(extra_field={"new": [1]})))
    assert isinstance(health, TerminalUpdate) and health.health == {
        "uptime_s": 5.0,
        "fps": 12.5,
        "outbox": {"depth": 2},
        "events": {"accepted": 1},
    }
    assert _judge(ingest, "status", b"") is None  # a cleared retained status


def test_the_terminals_birth_and_will_are_signed_and_ordered(signer: Signer, tmp_path: Path) -> None:
    """What the terminal's link sends (device.transport.availability) is what the backend believes."""
    ingest = _ingest(signer)
    availability = Availability("t1", signer.sign, {"software": "x", "started_at": 1.0, "models": {}})
    store = Store(str(tmp_path / "s.sqlite"))
    store.add_terminal("t1", public_key(signer))
    now = time.time()
    connect = now - 10
    verdicts = [
        _judge(ingest, "status", raw)
        for raw in (
            availability.birth(connect),
            availability.will(connect),  # the will of that connection: after its birth
            availability.birth(connect - 100),  # an older connection's birth, arriving late
            availability.birth(connect + 5),  # the next connection
            availability.status("offline", "stopped", connect + 8),
        )
    ]
    assert all(isinstance(v, TerminalUpdate) for v in verdicts)
    outcomes = [
        store.terminal_status(v.terminal, v.state, v.at, v.gallery_version, now + SKEW) for v in verdicts
    ]
    assert outcomes == ["applied", "applied", "stale", "applied", "applied"]
    held = store.terminals()[0]
    assert (held.state, held.status_at) == ("offline", round(connect + 8, 3))
    store.close()


# ---- the store's ordering, whatever the arrival order -----------------------------------------------------

statuses = st.lists(
    st.tuples(st.integers(0, 20).map(float), st.sampled_from(["online", "offline"])), min_size=1, max_size=12
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=statuses)
def test_stored_status_is_the_newest_whatever_the_arrival_order(tmp_path: Path, arrivals) -> None:
    path = tmp_path / f"o{abs(hash(str(arrivals)))}.sqlite"
    store = Store(str(path))
    try:
        store.add_terminal("t1", "key")
        best: tuple[float, int] | None = None
        for at, state in arrivals:
            key = (at, state == "offline")
            outcome = store.terminal_status("t1", state, at, None, future_after=100.0)
            expected = "applied" if best is None or key > best else "same" if key == best else "stale"
            assert outcome == expected, (arrivals, at, state)
            best = key if best is None or key > best else best
            held = store.terminals()[0]
            assert (held.status_at, held.state == "offline") == best  # never backwards
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_stored_future_time_never_blocks_newer_state(tmp_path: Path) -> None:
    """A record dated in the future (written before such state was refused) yields to the next real one."""
    store = Store(str(tmp_path / "f.sqlite"))
    store.add_terminal("t1", "key")
    with sqlite3.connect(tmp_path / "f.sqlite") as db:
        db.execute("UPDATE terminals SET state = 'online', status_at = 1e18, health = '{}', health_at = 1e18")
    now = time.time()
    assert store.terminal_status("t1", "offline", now, 4, now + SKEW) == "applied"
    assert store.terminal_health("t1", {"fps": 1.0}, now, now + SKEW) == "applied"
    assert store.terminal_health("t1", {"fps": 2.0}, now - 1, now + SKEW) == "stale"
    assert store.terminal_health("t1", {"fps": 1.0}, now, now + SKEW) == "same"
    held = store.terminals()[0]
    assert (held.state, held.gallery_version, held.health) == ("offline", 4, {"fps": 1.0})
    store.close()


# ---- the page over hostile stored state --------------------------------------------------------------------

HOSTILE_ROWS = {
    # id: (state, status_at, health text, health_at, gallery_version)
    "future": ("online", 1e18, '{"fps": 1e300, "outbox": {"depth": 3}}', 1e18, 2**62),
    "nan": ("offline", -1e300, '{"fps": NaN, "outbox": "full", "events": [1, 2]}', float("nan"), None),
    "markup": ('<img src=x onerror="document.title=1">', None, "[1, 2, 3]", 0.0, -1),
    "broken": (None, None, "{not json", None, None),
    "types": (
        "online",
        5.0,
        '{"fps": {"a": 1}, "outbox": null, "cpu_temp_c": "hot", "liveness_warning": [1]}',
        5.0,
        7,
    ),
    "lab": (
        "online",
        5.0,
        '{"fps": 2.0, "liveness_warning": "liveness is off: no liveness check at all"}',
        5.0,
        1,
    ),
}


def test_page_renders_whatever_state_is_stored(tmp_path: Path) -> None:
    exe = _chromium()
    db = str(tmp_path / "hostile.sqlite")
    Store(db).close()
    for terminal in HOSTILE_ROWS:
        register(db, terminal, public_key(Signer(SigningKey.generate())))
    with sqlite3.connect(db) as conn:
        for terminal, row in HOSTILE_ROWS.items():
            conn.execute(
                "UPDATE terminals SET state = ?, status_at = ?, health = ?, health_at = ?, gallery_version = ? "
                "WHERE id = ?",
                (*row, terminal),
            )
    with Broker(tmp_path / "mq") as broker:
        backend = BackendProc(tmp_path, broker.url, db, "page", "--auth", "open", token=False)
        try:
            listed = {t["id"]: t for t in backend.json("/api/terminals")}
            assert set(listed) == set(HOSTILE_ROWS)
            assert listed["nan"]["health"]["fps"] is None and listed["nan"]["health_at"] is None
            assert listed["broken"]["health"] is None and listed["broken"]["state"] == "unknown"
            dom = _chromium_run(exe, backend.url, "--dump-dom", tmp=tmp_path / "chromium-dom").stdout
            shot = tmp_path / "hostile-page.png"
            _chromium_run(exe, backend.url, f"--screenshot={shot}", tmp=tmp_path / "chromium-shot")
        finally:
            assert backend.stop() == 0
    assert 'data-ready="1"' in dom, dom[-2000:]
    rows = dom[dom.index('<table id="terminal-list">') :]
    rows = rows[: rows.index("</table>")]
    for terminal in HOSTILE_ROWS:
        assert f"<td>{terminal}</td>" in rows, terminal
    assert "as of ?" in rows  # a time that is no date renders as "?"
    # A terminal without the challenge says so on the page (and a warning that is no text is not shown).
    assert rows.count("liveness-warning") == 1 and "⚠ liveness is off: no liveness check at all" in rows
    assert (
        "&lt;img" in rows and "<title>faceonly site · faceonly</title>" in dom
    )  # stored text is text, never markup
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
