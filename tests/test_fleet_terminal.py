"""A real terminal (`faceonly run` on a replay) on a 3-node NATS cluster, MQTT 3.1.1 only, and the backend
reading the cluster's durable stream: everything the terminal does works there.

- its status and health reach the backend (statuses through the durable consumer, health through the queue
  group), so does every face event;
- a read-only command through `faceonly ctl --protocol 3.1.1` (the reply address travels in the payload);
- walk-up enrolment: the backend's signed `enroll`, the template in the reply, the signed gallery delta
  pushed back (3.1.1 requests, QoS 0 reply subscriptions): the next pass is matched on the terminal;
- the node the terminal is connected to is SIGKILLed: it moves to another node of its broker list, and the
  pass after that is recorded too.

Liveness is OFF: a photo replay cannot pass the challenge (as in tests/test_backend_enrol.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from device.identity.operator import keygen
from device.transport.auth import write_keypair
from tests.backend_parts import BackendProc, TerminalProc, register, terminal_key
from tests.nats_parts import nats_cluster, port_of

FPS = 10.0
SCRIPT = (
    ("empty", 15.0),
    ("face", 1.5),
    ("empty", 15.0),
    ("face", 1.5),
    ("empty", 22.0),
    ("face", 1.5),
    ("empty", 5.0),
)


def _replay(folder: Path) -> Path:
    from skimage import data

    folder.mkdir(parents=True)
    empty = np.full((300, 400, 3), 96, np.uint8)
    face = empty.copy()
    face[25:275, 75:325] = cv2.resize(data.astronaut()[20:230, 130:330, ::-1], (250, 250))
    cv2.imwrite(str(folder / "empty.png"), empty)
    cv2.imwrite(str(folder / "face.png"), face)
    frames, t = [], 0.0
    for name, seconds in SCRIPT:
        for _ in range(int(seconds * FPS)):
            frames.append({"file": f"{name}.png", "t": round(t, 3)})
            t += 1 / FPS
    (folder / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return folder


def test_a_terminal_on_a_nats_cluster_with_mqtt_311(tmp_path: Path) -> None:
    keygen(tmp_path / "gallery.key")
    write_keypair(tmp_path / "command.key")
    db = str(tmp_path / "attendance.sqlite")
    conf = tmp_path / "backend.toml"
    conf.write_text(
        f'[identity]\ngallery_key_file = "{tmp_path / "gallery.key"}"\n'
        f'command_key_file = "{tmp_path / "command.key"}"\n'
        '[site]\nprofile = "none"\n'  # a lab: no consent asked (tests/test_backend_enrol.py asks it)
    )
    register(db, "gate-01", terminal_key(tmp_path / "state-gate-01"))
    with nats_cluster(tmp_path / "nats") as cluster:
        mqtt, nats = ",".join(cluster.mqtt_urls), ",".join(cluster.nats_urls)
        backend = BackendProc(tmp_path, mqtt, db, "a", "--nats", nats, "--config", str(conf))
        terminal = None
        try:
            terminal = TerminalProc(
                tmp_path,
                mqtt,
                "gate-01",
                _replay(tmp_path / "replay"),
                pace="recorded",
                conf_extra='protocol = "3.1.1"\nsubscription_qos = 0\n'
                f'[identity]\ngallery_public_key_file = "{tmp_path / "gallery.key.pub"}"\n'
                f'[control]\ncommand_public_key_file = "{tmp_path / "command.key.pub"}"\n',
            )

            def terminal_row() -> dict:
                rows = backend.json("/api/terminals")
                return rows[0] if rows else {}

            assert backend.wait_for(lambda: terminal_row().get("state") == "online", 30), terminal.text()[
                -2000:
            ]
            ctl = [
                sys.executable,
                "-m",
                "device",
                "ctl",
                "--broker",
                cluster.mqtt_urls[2],
                "--protocol",
                "3.1.1",
            ]
            status = subprocess.run(
                [*ctl, "--id", "gate-01", "cmd", "status", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0, status.stdout + status.stderr
            assert json.loads(status.stdout)["result"]["state"] == "online"

            code, reply = backend.request(
                "api/subjects/astro/enroll", {"terminal": "gate-01", "display_name": "Astro", "timeout_s": 25}
            )
            assert code == 200, (reply, terminal.text()[-3000:])
            assert reply["added"] == ["astro"] and reply["gallery_version"] == 1

            def matched() -> list[dict]:
                return [
                    e
                    for e in backend.json("/api/events")
                    if e["subject"] == "astro" and e["match_source"] == "terminal"
                ]

            assert backend.wait_for(lambda: len(matched()) == 1, 40), terminal.text()[-3000:]
            assert backend.wait_for(lambda: terminal_row().get("gallery_version") == 1, 20)
            assert backend.wait_for(
                lambda: terminal_row().get("health") is not None, 20
            )  # via the queue group

            connected = re.findall(r"connected to mqtt://127\.0\.0\.1:(\d+)", terminal.text())
            node = next(n for n in cluster.nodes if port_of(n.mqtt_url) == int(connected[-1]))
            cluster.kill(node.name)
            assert terminal.wait_for(
                lambda: (
                    len(re.findall(r"connected to mqtt://127\.0\.0\.1:(\d+)", terminal.text()))
                    > len(connected)
                ),
                20,
            ), terminal.text()[-2000:]
            moved = re.findall(r"connected to mqtt://127\.0\.0\.1:(\d+)", terminal.text())[-1]
            assert int(moved) != port_of(node.mqtt_url)
            assert backend.wait_for(lambda: len(matched()) == 2, 60), terminal.text()[-3000:]
            assert terminal.stop() == 0
            assert backend.wait_for(lambda: terminal_row().get("state") == "offline", 20)
            quarantined = backend.json("/api/health")["quarantined"]
            assert not {k: v for k, v in quarantined.items() if k not in ("stale", "duplicate")}, quarantined
        finally:
            if terminal is not None and terminal.proc.poll() is None:
                terminal.stop()
            backend.stop()
