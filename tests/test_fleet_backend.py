"""The backend on a NATS cluster's durable stream: it makes (or checks) its consumer and refuses to run without
one; it acknowledges a message only after PostgreSQL committed it, so a database outage makes the cluster
deliver again (redeliveries and lag in its health) and the store absorbs the duplicates."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

from device.privacy.signing import Signer
from faceonly_backend.jetstream import consumer_config
from faceonly_backend.natscluster import MQTT_STREAM
from faceonly_backend.natsconfig import NatsSection
from tests.backend_parts import ROOT, BackendProc, face_event, public_key, register
from tests.broker import free_port
from tests.nats_parts import Client311, nats_cluster, wait_for
from tests.postgres import Postgres


def _backend(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "device", "backend", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_no_cluster_no_backend(tmp_path: Path) -> None:
    dead_mqtt, dead_nats = f"mqtt://127.0.0.1:{free_port()}", f"nats://127.0.0.1:{free_port()}"
    conf = tmp_path / "quick.toml"
    conf.write_text("[nats]\nstart_timeout_s = 3\n")
    started = time.monotonic()
    out = _backend(
        "--config",
        str(conf),
        "--broker",
        dead_mqtt,
        "--nats",
        dead_nats,
        "--db",
        str(tmp_path / "b.sqlite"),
        "--state-dir",
        str(tmp_path / "state"),
        "--http",
        f"127.0.0.1:{free_port()}",
    )
    assert out.returncode == 1, out.stderr
    assert "cannot connect to NATS" in out.stderr and "backend page" not in out.stderr
    assert time.monotonic() - started < 30
    conf = tmp_path / "b.toml"
    conf.write_text(f'[nats]\nservers = ["{dead_nats}"]\n[mqtt]\nprotocol = "5"\n')
    wrong = _backend("--config", str(conf), "--validate-config")
    assert wrong.returncode == 2 and "3.1.1" in wrong.stderr


async def _squat(servers: list[str]) -> None:
    """Someone else's consumer under the backend's default name (it reads every message)."""
    import nats

    nc = await nats.connect(servers=servers)
    try:
        config = consumer_config(NatsSection(), "faceonly")
        config.filter_subjects = None
        config.filter_subject = "$MQTT.msgs.>"
        await nc.jetstream().add_consumer(MQTT_STREAM, config)
    finally:
        await nc.close()


def test_a_consumer_of_that_name_reading_something_else_is_refused(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "nats") as cluster:
        Client311(cluster.mqtt_urls[0], "first").close()  # the MQTT layer makes its streams
        assert wait_for(lambda: cluster.stream_leader() is not None, 30)
        asyncio.run(_squat(cluster.nats_urls))
        out = _backend(
            "--broker",
            cluster.mqtt_urls[0],
            "--nats",
            ",".join(cluster.nats_urls),
            "--db",
            str(tmp_path / "b.sqlite"),
            "--state-dir",
            str(tmp_path / "state"),
            "--http",
            f"127.0.0.1:{free_port()}",
        )
        assert out.returncode == 3, out.stderr
        assert "is not this backend's" in out.stderr and "[nats] consumer" in out.stderr


def test_acked_only_after_commit_redelivered_through_a_database_outage(tmp_path: Path) -> None:
    signer = Signer(SigningKey.generate())
    conf = tmp_path / "backend.toml"
    conf.write_text("[nats]\nack_wait_s = 2\nmax_ack_pending = 100\n")
    with nats_cluster(tmp_path / "nats") as cluster, Postgres() as pg:
        register(pg.url, "gate-01", public_key(signer))
        nats = ",".join(cluster.nats_urls)
        backend = BackendProc(
            tmp_path, ",".join(cluster.mqtt_urls), pg.url, "a", "--nats", nats, "--config", str(conf)
        )
        try:
            assert "created durable consumer faceonly-backend" in backend.text()
            terminal = Client311(cluster.mqtt_urls[1], "gate-01", clean=False)
            sent = []

            def send(n: int) -> None:
                for _ in range(n):
                    event = face_event("gate-01", signer)
                    terminal.publish("faceonly/v1/dev/gate-01/event/face", json.dumps(event).encode(), qos=1)
                    sent.append(event["id"])

            send(10)
            assert backend.wait_for(lambda: backend.json("/api/health")["recorded"] == 10, 30)
            pg.stop()  # the database goes away: nothing can be committed, so nothing is acknowledged
            send(20)

            def stream() -> dict:
                return backend.json("/api/health")["stream"]

            # Delivered, not acknowledged; after ack_wait the cluster delivers them again.
            assert backend.wait_for(lambda: stream()["ack_pending"] >= 20, 30), stream()
            assert backend.wait_for(lambda: stream()["redelivered"] > 0, 30), stream()
            assert backend.json("/api/health")["store_errors"] > 0
            # Only the health, and only to a token the database accepted before it went away.
            assert backend.request("/api/terminals")[0] == 503
            backend.token, token = "fo_" + "0" * 16 + "_" + "A" * 43, backend.token
            assert backend.request("/api/health")[0] == 503
            backend.token = token
            pg.start()
            assert backend.wait_for(lambda: stream()["ack_pending"] == 0 and stream()["lag"] == 0, 60), (
                stream()
            )
            health = backend.json("/api/health")
            assert health["recorded"] == 30
            assert health["quarantined"].get("duplicate", 0) > 0  # the redeliveries, absorbed
            import psycopg

            with psycopg.connect(pg.url) as db:
                rows = [r[0] for r in db.execute("SELECT event_id FROM attendance").fetchall()]
            assert sorted(rows) == sorted(sent)  # each once
            terminal.close()
        finally:
            backend.stop()
