"""The back office end to end: real mosquitto, two real terminal processes, the backend process, the CLI.

One gallery authority: a terminal holding a lab gallery (version 3, `faceonly gallery push`) is adopted by
the backend, which signs its own gallery above it (version 4) for every terminal; from then on the lab tools
are refused, by the CLI (it asks the terminal first) and by the terminal itself (`managed`). Retention: a
person whose end date has passed is purged by the backend's own timer: from its gallery (a signed delta) and
on every terminal through the signed `subject.purge`, with a receipt naming both terminals and when each
confirmed; the audit log verifies end to end.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.identity import operator as op
from device.identity.push import PushError, Requester, push
from device.transport.auth import read_signing_key, write_keypair
from device.transport.client import ClientOptions, new_client, parse_broker_url
from device.transport.topics import Topics
from tests.backend_parts import BackendProc, TerminalProc, register, terminal_key
from tests.broker import Broker
from tests.office_parts import astronaut_photo, photo_folders

ROOT = Path(__file__).resolve().parent.parent
FPS = 10.0


def _idle(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "empty.png"), np.full((300, 400, 3), 96, np.uint8))
    frames = [{"file": "empty.png", "t": round(i / FPS, 3)} for i in range(20)]
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder


def _faceonly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _ask(broker: Broker, terminal: str, name: str, args: dict, key: Path | None = None) -> dict:
    options = ClientOptions(parse_broker_url(broker.url))
    client = new_client(options, f"test-{terminal}-{time.monotonic_ns()}"[:60])
    client.connect(options.broker.host, options.broker.port)
    requester = Requester(client, Topics("faceonly", terminal), 20, read_signing_key(key) if key else None)
    try:
        return requester.request(name, args)
    finally:
        requester.close()


def _held(broker: Broker, terminal: str) -> dict:
    reply = _ask(broker, terminal, "gallery.list", {"ids": True})
    assert reply["ok"], reply
    return reply["result"]


def _wait(pred, timeout: float, what: str, log=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:g} s" + (f"\n{log()[-3000:]}" if log else ""))


def _answers(broker: Broker, terminal: str) -> bool:
    try:
        return bool(_ask(broker, terminal, "gallery.list", {})["ok"])
    except PushError:
        return False


def test_one_authority_then_retention_purges_everywhere_with_a_receipt(tmp_path: Path) -> None:  # noqa: PLR0915 - one scenario, step by step
    op.keygen(tmp_path / "gallery.key")
    write_keypair(tmp_path / "command.key")
    db = str(tmp_path / "backend.sqlite")
    conf = tmp_path / "backend.toml"
    conf.write_text(
        f'[store]\ndb = "{db}"\n'
        f'[identity]\ngallery_key_file = "{tmp_path / "gallery.key"}"\n'
        f'command_key_file = "{tmp_path / "command.key"}"\n'
        '[site]\nprofile = "none"\ntime_zone = "Europe/Berlin"\n'
        "[retention]\ncheck_interval_s = 1\n"
    )
    extra = (
        f'[identity]\ngallery_public_key_file = "{tmp_path / "gallery.key.pub"}"\n'
        f'[control]\ncommand_public_key_file = "{tmp_path / "command.key.pub"}"\n'
    )
    broker = Broker(tmp_path / "mq")
    terminals: dict[str, TerminalProc] = {}
    backend = None
    try:
        for tid in ("gate-01", "gate-02"):
            register(db, tid, terminal_key(tmp_path / f"state-{tid}"))
            terminals[tid] = TerminalProc(
                tmp_path, broker.url, tid, _idle(tmp_path / f"idle-{tid}"), conf_extra=extra
            )
        for tid, t in terminals.items():
            _wait(lambda tid=tid: _answers(broker, tid), 90, f"{tid} answering", t.text)
        # Before the backend: the lab tools gave gate-01 a gallery of their own, version 3.
        lab = photo_folders(tmp_path / "lab", {"visitor": [astronaut_photo(tmp_path / "p", mirror=True)]})
        built = _faceonly(
            "gallery",
            "build",
            "--photos",
            str(lab),
            "--key",
            str(tmp_path / "gallery.key"),
            "--out",
            str(tmp_path / "v3.fog"),
            "--version",
            "3",
        )
        assert built.returncode == 0, built.stderr
        pushed = _faceonly(
            "gallery",
            "push",
            "--broker",
            broker.url,
            "--id",
            "gate-01",
            "--file",
            str(tmp_path / "v3.fog"),
            "--sign-key",
            str(tmp_path / "command.key"),
            "--terminal-key",
            terminal_key(tmp_path / "state-gate-01"),
        )
        assert pushed.returncode == 0, pushed.stderr
        assert _held(broker, "gate-01")["version"] == 3 and _held(broker, "gate-01")["authority"] == "lab"
        # The backend takes over: its first enrolment, then the terminals are brought in line.
        backend = BackendProc(tmp_path, broker.url, db, "a", "--config", str(conf))
        photos = photo_folders(tmp_path / "people", {"emp-0001": [astronaut_photo(tmp_path / "p")]})
        added = _faceonly(
            "backend",
            "subjects",
            "add",
            "--config",
            str(conf),
            "--photos",
            str(photos),
            "--broker",
            broker.url,
        )
        assert added.returncode == 0, added.stderr
        for tid in terminals:
            _wait(
                lambda tid=tid: _held(broker, tid).get("version") == 4,
                60,
                f"{tid} at version 4",
                backend.text,
            )
        held = {tid: _held(broker, tid) for tid in terminals}
        assert all(h["authority"] == "backend" and h["ids"] == ["emp-0001"] for h in held.values()), held
        # The backend process picks up the version its command line signed (as another instance's).
        _wait(
            lambda: backend.json("/api/subjects")["gallery_version"] == 4,
            30,
            "the backend at 4",
            backend.text,
        )
        # The lab tools are refused now: by the command line, and by the terminal itself.
        v5 = tmp_path / "v5.fog"
        assert (
            _faceonly(
                "gallery",
                "build",
                "--photos",
                str(lab),
                "--key",
                str(tmp_path / "gallery.key"),
                "--out",
                str(v5),
                "--version",
                "5",
            ).returncode
            == 0
        )
        refused = _faceonly(
            "gallery",
            "push",
            "--broker",
            broker.url,
            "--id",
            "gate-01",
            "--file",
            str(v5),
            "--sign-key",
            str(tmp_path / "command.key"),
            "--terminal-key",
            terminal_key(tmp_path / "state-gate-01"),
        )
        assert refused.returncode == 1 and "kept by a backend" in refused.stderr, refused.stderr
        options = ClientOptions(parse_broker_url(broker.url))
        client = new_client(options, "old-cli")
        client.connect(options.broker.host, options.broker.port)
        requester = Requester(
            client, Topics("faceonly", "gate-01"), 20, read_signing_key(tmp_path / "command.key")
        )
        with pytest.raises(PushError, match="managed"):
            push(requester, op.read_update(v5), base64.b64decode(terminal_key(tmp_path / "state-gate-01")))
        requester.close()
        assert _held(broker, "gate-01")["version"] == 4
        # Retention: her end date was yesterday in Berlin; the backend's timer purges her everywhere.
        yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
        status, person = backend.request("api/subjects/emp-0001", {"end_date": yesterday}, "PATCH")
        assert status == 200 and person["end_date"] == yesterday, person

        def receipt() -> dict | None:
            found = backend.json("/api/purges")
            return found[0] if found and found[0]["complete"] else None

        _wait(lambda: receipt() is not None, 60, "a complete purge receipt", backend.text)
        done = receipt()
        assert done["subject"] == "emp-0001" and done["reason"].startswith("retention: end date")
        assert done["requested_by"] == "system:retention" and done["attendance"]["policy"] == "kept"
        confirmed = {t["terminal"]: t for t in done["terminals"]}
        assert set(confirmed) == {"gate-01", "gate-02"}
        assert all(
            t["confirmed_at"] >= done["requested_at"] and t["templates_erased"] == 1
            for t in confirmed.values()
        )
        version = done["backend"]["templates_removed_in_gallery_version"]
        assert version == 5
        for tid in terminals:
            _wait(lambda tid=tid: _held(broker, tid).get("version") == version, 60, f"{tid} at {version}")
            assert _held(broker, tid)["ids"] == []
        people = backend.json("/api/subjects")["subjects"]
        assert [(p["id"], p["status"]) for p in people] == [("emp-0001", "deactivated")]
        assert backend.json("/api/audit/verify")["ok"]
        assert _faceonly("backend", "audit", "verify", "--config", str(conf)).returncode == 0
    finally:
        for t in terminals.values():
            t.stop()
        if backend is not None:
            assert backend.stop() == 0, backend.text()[-2000:]
        broker.kill()
