#!/usr/bin/env python3
"""`faceonly gallery push` of a large gallery at default settings, through a real mosquitto (printed figures).

    python scripts/benchmark_gallery_push.py [--subjects 100000] [--window 8]

A terminal (`python -m device run`, its own process) runs on the demo replay at recorded pace with a
gallery key and a command key configured. A snapshot of `--subjects` random unit templates is built with
the default chunk size and pushed exactly as `faceonly gallery push` pushes it (device.identity.push).
Printed: the update's size and chunks, the push time, the terminal's RSS before, at its peak during and
after the push (sampled every 50 ms from /proc), its frame loop during the push (health.loop), and the
time from starting the terminal again to its first status that reports the gallery, next to the same
start without one. The machine's load is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

TID = "t1"
BASE = f"faceonly/v1/dev/{TID}"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Watcher:
    """The terminal's status and health, as a backend sees them."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.status: list[tuple[float, dict]] = []
        self.health: list[tuple[float, dict]] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-watch", protocol=mqtt.MQTTv5)
        c.on_message = self._on_message
        c.connect(host, port)
        c.subscribe([(f"{BASE}/status", 1), (f"{BASE}/health", 0)])
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        if not msg.payload:
            return
        entry = (time.monotonic(), json.loads(msg.payload))
        (self.status if msg.topic.endswith("/status") else self.health).append(entry)

    def wait_status(self, pred, since: float, timeout_s: float = 120) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, body in list(self.status):
                if at >= since and pred(body):
                    return at
            time.sleep(0.02)
        raise SystemExit("the terminal did not report the expected status in time")


def _start(conf: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--config", str(conf)],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def main() -> int:  # noqa: PLR0915 - one scenario, step by step
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=100_000)
    ap.add_argument("--window", type=int, default=8, help="chunks in flight (push's default)")
    args = ap.parse_args()

    import numpy as np
    import paho.mqtt.client as mqtt
    from benchmark_control import looped_demo

    from device.contracts import ModelRef
    from device.identity import gallery as gal
    from device.identity import operator as op
    from device.identity.push import Requester, push
    from device.infra.modelstore import ModelStore
    from device.transport.auth import read_signing_key, write_keypair
    from device.transport.topics import Topics
    from device.vision.embed import l2_normalise
    from tests.broker import Broker

    print(f"before: {_load()}")
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        Broker(Path(tmp_name) / "mq", max_queued_messages=1000) as broker,
    ):
        tmp = Path(tmp_name)
        pub, _ = op.keygen(tmp / "gallery.key")
        write_keypair(tmp / "command.key")
        entry = ModelStore().entry("embedder")
        model = ModelRef("embedder", entry.file, entry.sha256)
        rng = np.random.default_rng(0)
        templates = l2_normalise(rng.normal(size=(args.subjects, 1, gal.DIM)))
        subjects = [gal.Subject(f"s{i:06d}", None, templates[i]) for i in range(args.subjects)]
        update = op.snapshot(op.load_gallery_signer(tmp / "gallery.key"), subjects, 1, model)
        del subjects, templates
        body = update.manifest["body"]
        print(
            f"snapshot of {args.subjects} subjects: {body['size'] / 1e6:.1f} MB in {body['chunk_count']} chunks of "
            f"{body['chunk_size']} bytes; signed manifest {len(json.dumps(update.manifest))} bytes"
        )
        replay = looped_demo(tmp, 3600)
        conf = tmp / "terminal.toml"
        conf.write_text(
            f'terminal_id = "{TID}"\n[service]\nstate_dir = "{tmp / "state"}"\nhealth_interval_s = 1.0\n'
            f'[mqtt]\nbroker = "{broker.url}"\n'
            f'[vision]\nsource = "replay:{replay}"\nreplay_pace = "recorded"\n'
            f'[identity]\ngallery_public_key_file = "{pub}"\n'
            f'[control]\ncommand_public_key_file = "{tmp / "command.key.pub"}"\n'
        )
        watcher = Watcher(broker.host, broker.port)
        log = tmp / "terminal.log"
        began = time.monotonic()
        term = _start(conf, log)
        online = watcher.wait_status(lambda s: s.get("state") == "online", began)
        print(f"terminal started without a gallery: online after {online - began:.2f} s")
        time.sleep(3)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-push", protocol=mqtt.MQTTv5)
        client.connect(broker.host, broker.port)
        requester = Requester(client, Topics("faceonly", TID), 60.0, read_signing_key(tmp / "command.key"))
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss.append((time.monotonic(), _rss_mb(term.pid)))
                time.sleep(0.05)

        before = _rss_mb(term.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        summary = push(requester, update, lambda m: None, window=args.window)
        pushed = time.monotonic() - t0
        time.sleep(5)
        stop.set()
        sampler.join()
        requester.close()
        after = _rss_mb(term.pid)
        during = [r for at, r in rss if at <= t0 + pushed]
        print(
            f"push: {summary['count']} subjects, version {summary['version']}, in {pushed:.1f} s "
            f"({body['size'] / 1e6 / pushed:.1f} MB/s, {body['chunk_count'] / pushed:.0f} chunks/s, window {args.window})"
        )
        print(
            f"terminal RSS: {before:.0f} MB before, peak {max(during):.0f} MB during, {after:.0f} MB 5 s after"
        )
        reports = [(at - t0, h["loop"]) for at, h in watcher.health if t0 <= at <= t0 + pushed + 3]
        if reports:
            worst_at, worst = max(reports, key=lambda r: r[1]["frame_ms"]["max"] or 0)
            p99s = sorted(lp["frame_ms"]["p99"] for _, lp in reports if lp["frame_ms"]["p99"] is not None)
            print(
                f"frame loop during the push (health.loop, {len(reports)} reports of the last "
                f"{reports[0][1]['window_s']:g} s): frame p99 median {p99s[len(p99s) // 2]:.0f} ms, "
                f"highest {p99s[-1]:.0f} ms; worst frame {worst['frame_ms']['max']:.0f} ms "
                f"(turn CPU {worst['turn_cpu_ms']['max']:.0f} ms), reported {worst_at:.1f} s into the push"
            )
        _stop(term)
        began = time.monotonic()
        term = _start(conf, log)
        loaded = watcher.wait_status(
            lambda s: s.get("state") == "online" and (s.get("gallery") or {}).get("count") == args.subjects,
            began,
        )
        print(f"terminal started again with the gallery: online with it after {loaded - began:.2f} s")
        print(f"terminal RSS with the gallery loaded: {_rss_mb(term.pid):.0f} MB")
        _stop(term)
        watcher.client.loop_stop()
    print(f"after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
