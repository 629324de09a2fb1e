"""The embedded demo broker (amqtt, MQTT 3.1.1, loopback only) and a backend-like printer.

Only for `faceonly run` without a configured broker: it shows what a backend would receive.
Production and tests use mosquitto (or any MQTT 5 broker). Needs the optional extra `demo`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
from typing import TextIO

import paho.mqtt.client as mqtt

OFFLINE_WAIT_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, topic_prefix: str, out: TextIO = sys.stdout) -> None:
        self.prefix = topic_prefix
        self.out = out
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-broker", daemon=True)
        self._offline_shown = threading.Event()
        self._broker = None
        self._printer: mqtt.Client | None = None

    def start(self) -> str:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise RuntimeError(
                "the embedded demo broker needs the `demo` extra: pip install 'faceonly[demo]'"
            ) from None
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        # amqtt and its state machine log every transition at INFO: the demo shows the backend view instead.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._thread.start()

        async def boot() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(15)
        self._printer = self._subscribe_printer()
        return f"mqtt://127.0.0.1:{self.port}"

    def _subscribe_printer(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="demo-backend", protocol=mqtt.MQTTv311
        )
        client.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}/#", qos=1)
        client.on_message = self._show
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client

    def _show(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        print(describe(msg.topic, msg.payload), file=self.out, flush=True)
        if msg.topic.endswith("/status") and b'"offline"' in msg.payload:
            self._offline_shown.set()

    def stop(self) -> None:
        # The terminal's offline status is the last thing a backend sees; amqtt may still be
        # forwarding it when the service returns, so the view waits for it (briefly).
        self._offline_shown.wait(OFFLINE_WAIT_S)
        if self._printer is not None:
            self._printer.disconnect()
            self._printer.loop_stop()
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def describe(topic: str, payload: bytes) -> str:
    """One short line per message, as a backend would log it; never image or embedding bytes."""
    try:
        data = json.loads(payload)
    except ValueError:
        return f"{topic}: {len(payload)} bytes (not JSON)"
    if not isinstance(data, dict):
        return f"{topic}: {type(data).__name__}"
    kind = data.get("type", "?")
    if kind == "event.face":
        obs = data.get("observation", {})
        bio = data.get("biometric", {})
        parts = [f"decision={obs.get('decision')}", f"track={obs.get('track_id')}"]
        parts += [f"{k}=<{len(v)} chars>" for k, v in bio.items() if isinstance(v, str)]
        reasons = "; ".join(str(r) for r in obs.get("reasons") or [])
        return f"[backend] event.face id={data.get('id')} " + " ".join(parts) + f" reasons: {reasons}"
    if kind == "prompt":
        return f"[backend] prompt track={data.get('track_id')} {data.get('state')}: {data.get('text')!r}"
    if kind == "health":
        return f"[backend] health fps={data.get('fps')} outbox={data.get('outbox', {}).get('depth')}"
    if kind == "status":
        return f"[backend] status {data.get('state')} software={data.get('software')}"
    return f"[backend] {kind} on {topic}"
