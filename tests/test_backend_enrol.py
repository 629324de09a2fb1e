"""Walk-up enrolment round trip through a real mosquitto: backend -> terminal `enroll` (signed) -> the
template in the reply -> a signed gallery delta pushed to the terminal -> the next pass of that person is
recorded under the subject. Then, while the terminal is away: removal (a delta; its records purged) and a
subject added from a photo by a second process; the returning terminal is caught up with a snapshot.

The terminal runs a recorded-pace replay with liveness OFF: a photo replay cannot pass the challenge
(turn the head, blink), so with the challenge on the enrolment would rightly end in `no_live_face`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from device.identity.operator import keygen
from device.privacy.personal import personal_text, usable_names
from device.transport.auth import write_keypair
from faceonly_backend.people import People
from faceonly_backend.store import Store
from tests.backend_parts import BackendProc, TerminalProc, register, terminal_key
from tests.broker import Broker

FPS = 10.0
LEAD_S, FACE_S, GAP_S = 12.0, 1.5, 8.0


def _replay(folder: Path) -> Path:
    """Empty frames, the astronaut's face (the enrolment), a gap (the push), the face again (the pass)."""
    from skimage import data

    folder.mkdir(parents=True)
    empty = np.full((300, 400, 3), 96, np.uint8)
    face = empty.copy()
    face[25:275, 75:325] = cv2.resize(data.astronaut()[20:230, 130:330, ::-1], (250, 250))
    cv2.imwrite(str(folder / "empty.png"), empty)
    cv2.imwrite(str(folder / "face.png"), face)
    frames, t = [], 0.0
    for name, seconds in (
        ("empty", LEAD_S),
        ("face", FACE_S),
        ("empty", GAP_S),
        ("face", FACE_S),
        ("empty", 3),
    ):
        for _ in range(int(seconds * FPS)):
            frames.append({"file": f"{name}.png", "t": round(t, 3)})
            t += 1 / FPS
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder


def _idle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "empty.png"), np.full((300, 400, 3), 96, np.uint8))
    frames = [{"file": "empty.png", "t": round(i / FPS, 3)} for i in range(20)]
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder


NAME = "Astro Nautica"


def _everything_on(broker: Broker):
    """A client that keeps every message crossing the broker (`#`): what anyone on the broker could read."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wire-watch", protocol=mqtt.MQTTv5)
    client.seen = []  # type: ignore[attr-defined]
    client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
    client.on_message = lambda c, u, m: c.seen.append((m.topic, bytes(m.payload)))
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _only_the_latest_is_kept(db: str) -> None:
    """No stored gallery still holds the removed subject's templates: only the latest version is kept."""
    store = Store(db)
    assert [p.id for p in People(store).all() if p.status == "active"] == ["astro2"]
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM galleries").fetchall() == [(3,)]


def _no_name_crossed(wire) -> None:
    """The name went to the terminal for its screen, and the template came back and went out in deltas and a
    snapshot: none of it readable on the broker (in the clear or base64), in either direction."""
    wire.loop_stop()
    assert len(wire.seen) > 20 and any("/cmd/req/gallery.chunk" in t for t, _ in wire.seen)
    names = usable_names([NAME])
    assert [t for t, p in wire.seen if personal_text(None, p, names)] == []


def _faceonly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device", *args], capture_output=True, text=True, timeout=60)


def test_walk_up_enrolment_then_recorded_under_the_subject_then_removed(tmp_path: Path) -> None:  # noqa: PLR0915 - one scenario
    keygen(tmp_path / "gallery.key")
    write_keypair(tmp_path / "command.key")
    db = str(tmp_path / "attendance.sqlite")
    broker = Broker(tmp_path / "mq")
    conf = tmp_path / "backend.toml"
    (tmp_path / "consent.txt").write_text("I agree that my face template is used for attendance.\n")
    conf.write_text(
        f'[identity]\ngallery_key_file = "{tmp_path / "gallery.key"}"\n'
        f'command_key_file = "{tmp_path / "command.key"}"\n'
        f'[site]\nconsent_text_file = "{tmp_path / "consent.txt"}"\nconsent_version = "2026-1"\n'
    )
    register(db, "gate-01", terminal_key(tmp_path / "state-gate-01"))
    wire = _everything_on(broker)
    backend = BackendProc(tmp_path, broker.url, db, "a", "--config", str(conf))
    terminal = None
    extra = (
        f'[identity]\ngallery_public_key_file = "{tmp_path / "gallery.key.pub"}"\n'
        f'[control]\ncommand_public_key_file = "{tmp_path / "command.key.pub"}"\n'
    )
    try:
        assert backend.wait_for(lambda: "subscribed:" in backend.text(), 20)
        terminal = TerminalProc(
            tmp_path,
            broker.url,
            "gate-01",
            _replay(tmp_path / "replay"),
            pace="recorded",
            conf_extra=extra,
        )
        assert backend.wait_for(
            lambda: any(t["state"] == "online" for t in backend.json("/api/terminals")), 30
        ), terminal.text()[-2000:]
        # Pinning from the terminal's own privacy.report takes the operator's confirmation of its key id.
        pin = ["backend", "terminals", "add", "--db", db, "--id", "gate-01", "--from-broker", broker.url]
        unconfirmed = _faceonly(*pin)
        assert unconfirmed.returncode == 2 and "Nothing registered" in unconfirmed.stderr
        key_id = re.search(r"--confirm (\w+)", unconfirmed.stderr).group(1)
        assert _faceonly(*pin, "--confirm", key_id).returncode == 0
        # Under the default gdpr profile nothing is sent to the terminal without a consent on record.
        status, reply = backend.request(
            "api/subjects/astro/enroll", {"terminal": "gate-01", "display_name": NAME, "timeout_s": 20}
        )
        assert status == 409 and "no consent on record for astro" in reply["error"]
        status, reply = backend.request(
            "api/subjects/astro/enroll",
            {
                "terminal": "gate-01",
                "display_name": NAME,
                "timeout_s": 20,
                "consent": {"person_name": "Astro Naut", "method": "paper"},
            },
        )
        assert status == 200, reply
        assert reply["added"] == ["astro"] and reply["gallery_version"] == 1 and reply["clashes"] == []

        def recorded_under_subject() -> list[dict]:
            return [e for e in backend.json("/api/events") if e["subject"] == "astro"]

        def matched_on_terminal() -> list[dict]:
            return [e for e in recorded_under_subject() if e["match_source"] == "terminal"]

        # The next pass is matched on the terminal, against the pushed delta. (The enrolment pass itself
        # may also be recorded under the subject: its event carried the embedding, matched centrally.)
        assert backend.wait_for(lambda: matched_on_terminal(), 40), terminal.text()[-3000:]
        passed = matched_on_terminal()
        assert len(passed) == 1 and passed[0]["decision"] == "accepted" and passed[0]["score"] > 0.9
        assert {e["match_source"] for e in recorded_under_subject()} <= {"terminal", "backend"}
        # The terminal holds the pushed version (its status says so).
        assert backend.wait_for(lambda: backend.json("/api/terminals")[0]["gallery_version"] == 1, 20)
        subjects = backend.json("/api/subjects")
        assert subjects["gallery_version"] == 1 and [s["id"] for s in subjects["subjects"]] == ["astro"]
        # The terminal goes away; meanwhile the subject is erased (v2, a delta; records kept, anonymised; the
        # purge waits for the terminal) and another is enrolled from a photo by a second process on the
        # same store (v3, a delta on v2).
        assert terminal.stop() == 0
        status, removed = backend.request("api/subjects/astro", method="DELETE")
        assert status == 200, removed
        assert removed["backend"]["templates_removed_in_gallery_version"] == 2
        assert removed["attendance"]["policy"] == "anonymised" and removed["attendance"]["records"] >= 1
        assert [t["confirmed_at"] for t in removed["terminals"]] == [None]
        assert not recorded_under_subject() and len(backend.json("/api/events")) >= 2
        assert [s["status"] for s in backend.json("/api/subjects")["subjects"]] == []
        photos = tmp_path / "photos" / "astro2"
        photos.mkdir(parents=True)
        cv2.imwrite(str(photos / "face.png"), cv2.imread(str(tmp_path / "replay" / "face.png")))
        consent = ["--config", str(conf), "--db", db]
        assert (
            _faceonly(
                "backend",
                "consent",
                "record",
                *consent,
                "--id",
                "astro2",
                "--name",
                "A. Naut",
                "--method",
                "electronic",
            ).returncode
            == 0
        )
        added = _faceonly(
            "backend", "subjects", "add", "--config", str(conf), "--db", db, "--photos", str(photos.parent)
        )
        assert added.returncode == 0 and "gallery version 3" in added.stdout, added.stderr
        assert backend.wait_for(lambda: backend.json("/api/subjects")["gallery_version"] == 3, 20)
        # Back online holding v1, which v3's base is not: it is caught up with a signed snapshot of v3.
        terminal = TerminalProc(tmp_path, broker.url, "gate-01", _idle(tmp_path / "idle"), conf_extra=extra)
        assert backend.wait_for(lambda: backend.json("/api/terminals")[0]["gallery_version"] == 3, 40), (
            backend.text()[-2000:]
        )
        assert "gallery version 3 pushed to gate-01" in backend.text()
        # Back, it confirmed the purge first: the receipt is complete.
        assert backend.wait_for(lambda: backend.json("/api/purges")[0]["complete"], 20)
        # An enrolment at a terminal nobody registered is a clear error, and changes nothing: the backend has
        # no key to seal the person's name to, so it sends nothing at all.
        status, reply = backend.request(
            "api/subjects/x1/enroll",
            {
                "terminal": "nope",
                "display_name": "X",
                "timeout_s": 1,
                "consent": {"person_name": "X", "method": "paper"},
            },
        )
        assert status == 409 and "terminal nope is not registered" in reply["error"]
        _only_the_latest_is_kept(db)
        _no_name_crossed(wire)
    finally:
        if terminal is not None:
            terminal.stop()
        backend.stop()
        broker.kill()
