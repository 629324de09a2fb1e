"""The service loop in-process with real parts (device.runtime.compose.build, as the CLI composes them):
real mosquitto, the real pipeline on a replay, the real outbox. The subprocess tests
(test_service_lifecycle, test_clean_exits) keep proving signals and systemd behaviour."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from device.config import load_config
from device.runtime.compose import build
from device.runtime.lifecycle import Lifecycle
from device.runtime.runtime_config import RuntimeConfig
from device.runtime.service import Service
from device.vision.demo import make_demo
from tests.broker import Broker, free_port
from tests.replay_faces import make_replay
from tests.vision_helpers import model_store

TERMINAL = "loop-01"


class Loop:
    """The real Service in a thread of this process."""

    def __init__(self, overrides: dict) -> None:
        cfg = load_config(None, overrides)
        self.lifecycle = Lifecycle({})
        self.service = Service(RuntimeConfig(cfg), build(cfg), self.lifecycle, lambda: cfg)
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.status = self.service.run()

    def stop(self) -> int | None:
        self.lifecycle.request_stop()
        self.thread.join(30)
        return self.status


def _config(tmp: Path, broker_url: str, replay: Path, **service) -> dict:
    return {
        "terminal_id": TERMINAL,
        "service": {"state_dir": str(tmp / "state"), "health_interval_s": 0.5, **service},
        "mqtt": {"broker": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
        "vision": {"source": f"replay:{replay}", "replay_pace": "recorded", "liveness": {"seed": 3}},
    }


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_loop_delivers_events_and_stops_cleanly_in_process(tmp_path: Path) -> None:
    model_store()
    replay = make_replay(tmp_path / "replay", 2)
    got: list[dict] = []
    with Broker(tmp_path / "mq") as broker:
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="loop-watch")
        watcher.on_connect = lambda c, *_: c.subscribe(f"faceonly/v1/dev/{TERMINAL}/#", qos=1)
        watcher.on_message = lambda c, u, m: got.append({"topic": m.topic, **json.loads(m.payload)})
        watcher.connect(broker.host, broker.port)
        watcher.loop_start()
        try:
            loop = Loop(_config(tmp_path, broker.url, replay))
            assert _wait(lambda: loop.service.source_finished, 60)
            assert _wait(lambda: len([g for g in got if g.get("type") == "event.face"]) >= 2, 30), got
            assert _wait(lambda: any(g.get("type") == "health" for g in got), 10)
            assert loop.stop() == 0

            def last_status() -> dict:
                return [g for g in got if g["topic"].endswith("/status")][-1]

            # The watcher hears the offline status a moment after the broker took it.
            assert _wait(lambda: last_status()["state"] == "offline", 10), last_status()
            assert last_status()["reason"] == "stopped"
            events = [g for g in got if g.get("type") == "event.face"]
            assert len({e["id"] for e in events}) == len(events)  # each event once
            assert len(loop.service.outbox) == 0  # all delivered, nothing left behind
        finally:
            watcher.loop_stop()
            watcher.disconnect()


def test_prompts_reach_the_local_screen_while_the_broker_is_down(tmp_path: Path) -> None:
    """No broker at all: the challenge still tells the person what to do, through the local socket."""
    model_store()
    replay = make_demo(tmp_path / "demo")  # a person walking up (the astronaut photo): the challenge starts
    path = tmp_path / "prompts.sock"
    screen = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    screen.bind(str(path))
    screen.settimeout(30)
    loop = Loop(_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}", replay, prompt_socket=str(path)))
    try:
        prompt = json.loads(screen.recv(65536))["prompt"]
        assert prompt["state"] == "prompt" and prompt["step"] in ("turn_left", "turn_right", "blink")
        assert prompt["code"] == f"challenge.{prompt['step']}" and "text" not in prompt
        # recv can return before the loop thread has recorded that the send went through.
        assert _wait(lambda: loop.service.prompts.describe()["sinks"]["local"], 5)
        assert loop.service.prompts.describe() == {"listening": True, "sinks": {"local": True, "mqtt": False}}
        assert not loop.service.link.connected
        assert loop.service.health()["prompts"]["sinks"]["local"] is True
    finally:
        assert loop.stop() == 0
        screen.close()


def test_a_missing_screen_is_reported_not_fatal(tmp_path: Path) -> None:
    model_store()
    replay = make_demo(tmp_path / "demo")
    with Broker(tmp_path / "mq") as broker:
        loop = Loop(_config(tmp_path, broker.url, replay, prompt_socket=str(tmp_path / "nobody.sock")))
        try:
            assert _wait(lambda: loop.service.prompts.sinks["local"].undelivered > 0, 30)  # type: ignore[attr-defined]
            assert _wait(lambda: loop.service.link.connected, 15)
            assert loop.service.prompts.describe() == {
                "listening": True,
                "sinks": {"local": False, "mqtt": True},
            }
        finally:
            assert loop.stop() == 0


def test_a_terminal_without_the_challenge_says_so_in_status_health_and_log(tmp_path: Path, caplog) -> None:
    """liveness off or passive lets a photo of an enrolled person through: the operator is told at start,
    in status and in every health message, not only in the config file."""
    import logging

    model_store()
    replay = make_replay(tmp_path / "replay", 1)
    with Broker(tmp_path / "mq") as broker:
        for policy, words in (
            ("off", "no liveness check at all"),
            ("passive", "a photo of an enrolled person"),
        ):
            cfg = _config(tmp_path / policy, broker.url, replay)
            cfg["vision"]["liveness"]["policy"] = policy
            with caplog.at_level(logging.WARNING, logger="device.runtime.service"):
                running = Loop(cfg)
                try:
                    assert _wait(lambda r=running: r.service.source_finished, 60)  # type: ignore[misc]
                    assert words in running.service.status()["liveness_warning"]
                    assert words in running.service.health()["liveness_warning"]
                finally:
                    assert running.stop() == 0
            assert any(words in r.getMessage() for r in caplog.records), policy
        loop = Loop(_config(tmp_path / "challenge", broker.url, replay))
        try:
            assert "liveness_warning" not in loop.service.status()
        finally:
            assert loop.stop() == 0
