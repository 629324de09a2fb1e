"""The demo broker (loopback only) and a backend-like printer.

Only for `faceonly run` without a configured broker: it shows what a backend would receive, and
the operator's tools (`faceonly ctl`, `faceonly audit`) can talk to it. When Debian's mosquitto is
installed, the demo runs a private mosquitto child process (MQTT 5, like production); otherwise the
pure-Python amqtt of the optional extra `demo`, which speaks only MQTT 3.1.1 (tools then need
`--protocol 3.1.1`). Production and tests use a real mosquitto (or any MQTT 5 broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as mqtt

from device.transport.client import ClientOptions, Protocol, new_client, parse_broker_url
from device.wire.bounded import PayloadError, loads_bounded

OFFLINE_WAIT_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _die_with_parent() -> None:
    # A killed `faceonly run` must not leave its private broker behind (Linux PR_SET_PDEATHSIG = 1).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class EmbeddedBroker:
    def __init__(self, topic_prefix: str, out: TextIO = sys.stdout) -> None:
        self.prefix = topic_prefix
        self.out = out
        self.port = _free_port()
        self.protocol: Protocol = "5"
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None
        self._printer: mqtt.Client | None = None
        self._offline_shown = threading.Event()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the broker and the printer; returns the broker URL (see `protocol` and `kind`)."""
        mosquitto = find_mosquitto()
        if mosquitto is not None:
            self._start_mosquitto(mosquitto)
        else:
            self._start_amqtt()
        self._printer = self._subscribe_printer()
        return self.url

    def _start_mosquitto(self, exe: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="faceonly-demo-broker-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest none",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to user `mosquitto`
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Its own process group: Ctrl-C reaches the service, which still says goodbye through the broker.
        self._proc = subprocess.Popen(
            [exe, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0,
            preexec_fn=_die_with_parent,  # before any thread of ours starts: fork-safe here
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"the demo broker (mosquitto) exited: {' '.join(err.split())}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                self.protocol, self.kind = "5", "mosquitto, MQTT 5"
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the demo broker (mosquitto) did not listen on port {self.port} within 10 s")

    def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise RuntimeError(
                "the demo broker needs mosquitto (apt-get install mosquitto) or the `demo` extra "
                "(pip install 'faceonly[demo]')"
            ) from None
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        # amqtt and its state machine log every transition at INFO: the demo shows the backend view instead.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="demo-broker", daemon=True)
        self._thread.start()

        async def boot() -> None:
            broker = Broker(config)
            self._broker = broker
            await broker.start()

        asyncio.run_coroutine_threadsafe(boot(), loop).result(15)
        self.protocol, self.kind = "3.1.1", "amqtt, MQTT 3.1.1 only"

    def _subscribe_printer(self) -> mqtt.Client:
        client = new_client(ClientOptions(parse_broker_url(self.url), self.protocol), "demo-backend")
        client.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}/#", qos=1)
        client.on_message = self._show
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client

    def _show(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        line = describe(msg.topic, msg.payload)
        print(line, file=self.out, flush=True)
        if line.startswith("[backend] status offline"):
            self._offline_shown.set()

    def stop(self) -> None:
        # The terminal's offline status is the last thing a backend sees; the broker may still be
        # forwarding it when the service returns, so the view waits for it (briefly).
        self._offline_shown.wait(OFFLINE_WAIT_S)
        if self._printer is not None:
            self._printer.disconnect()
            self._printer.loop_stop()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._dir is not None:
            self._dir.cleanup()
        if self._loop is not None and self._thread is not None:
            if self._broker is not None:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def describe(topic: str, payload: bytes | bytearray) -> str:
    """One short line per message, as a backend would log it; never image or embedding bytes."""
    try:
        data = loads_bounded(payload, len(payload))
    except PayloadError as exc:
        return f"{topic}: {len(payload)} bytes (not JSON: {exc.code})"
    if not isinstance(data, dict):
        return f"{topic}: {type(data).__name__}"
    kind = data.get("type", "?")
    if kind == "event.face":
        obs = data.get("observation", {})
        bio = data.get("biometric", {})
        parts = [f"decision={obs.get('decision')}", f"track={obs.get('track_id')}"]
        match = data.get("match")
        if isinstance(match, dict):  # who matched on the terminal: a subject id (names never travel)
            parts.append(f"matched={match.get('subject') or 'unknown'} score={match.get('score')}")
        parts += [f"{k}=<{len(v)} chars>" for k, v in bio.items() if isinstance(v, str)]
        reasons = "; ".join(
            str(r.get("text")) if isinstance(r, dict) else str(r) for r in obs.get("reasons") or []
        )
        return f"[backend] event.face id={data.get('id')} " + " ".join(parts) + f" reasons: {reasons}"
    if kind == "prompt":
        extra = "".join(f" {k}={data[k]}" for k in ("step", "reason", "subject") if data.get(k) is not None)
        return f"[backend] prompt track={data.get('track_id')} {data.get('code')}{extra}"
    if kind == "health":
        return f"[backend] health fps={data.get('fps')} outbox={data.get('outbox', {}).get('depth')}"
    if kind == "status":
        return f"[backend] status {data.get('state')} software={data.get('software')}"
    return f"[backend] {kind} on {topic}"
