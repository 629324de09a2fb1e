"""The operator's tools against the demo broker that `faceonly run` starts (issue 14's acceptance),
and the one broker-URL rule: no scheme is refused, a broker that is down is one line and exit 3."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device.transport.client import BrokerUrlError, parse_broker_url
from tests.broker import Broker

ROOT = Path(__file__).resolve().parents[1]


def _faceonly(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_broker_url_needs_a_scheme() -> None:
    assert str(parse_broker_url("mqtt://h")) == "mqtt://h:1883"
    assert str(parse_broker_url("mqtts://h")) == "mqtts://h:8883"
    for bad in ("example.invalid:9999", "h", "http://h:1", "mqtt://", "mqtt://h:99999", "mqtt://h/x"):
        with pytest.raises(BrokerUrlError):
            parse_broker_url(bad)


def test_ctl_refuses_a_broker_without_scheme() -> None:
    res = _faceonly("ctl", "--broker", "example.invalid:9999", "--id", "t", "cmd", "status")
    assert res.returncode == 2
    assert "no scheme" in res.stderr and "mqtt://example.invalid:9999" in res.stderr


@pytest.mark.parametrize("tool", ["cmd", "watch", "desired"])
def test_ctl_with_the_broker_down_says_so_in_one_line(tmp_path: Path, tool: str) -> None:
    with Broker(tmp_path / "mq") as broker:
        url = broker.url
    extra = {
        "cmd": ["cmd", "status"],
        "watch": ["watch"],
        "desired": ["desired", "--version", "1", "--config", "{}"],
    }
    key = tmp_path / "command.key"
    assert _faceonly("keys", "generate", "--out", str(key)).returncode == 0
    res = _faceonly("ctl", "--broker", url, "--id", "t", "--sign-key", str(key), *extra[tool])
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "refused" in lines[0].lower(), res.stderr
    assert "Traceback" not in res.stderr


class _Lines:
    """A subprocess stream read on a thread, so that every wait has a deadline (a test never hangs)."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float = 30.0, poke=None) -> str:
        """The first line containing `text`; `poke()` is called every half second while waiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if poke is not None:
                poke()
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s")


def test_watch_resubscribes_after_a_broker_restart(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    with Broker(tmp_path / "mq") as broker:
        watch = subprocess.Popen(
            [sys.executable, "-m", "device", "ctl", "--broker", broker.url, "--id", "t1", "watch", "--raw"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        try:
            assert watch.stderr is not None and watch.stdout is not None
            errors, out = _Lines(watch.stderr), _Lines(watch.stdout)
            errors.wait_for("watching")
            broker.restart()
            errors.wait_for("lost")
            errors.wait_for("restored")
            pub.connect(broker.host, broker.port)
            pub.loop_start()

            def publish() -> None:
                # "restored" is printed on connect; the resubscription may land a moment later
                pub.publish("faceonly/v1/dev/t1/health", b'{"after": "restart"}', qos=1)

            out.wait_for('"after": "restart"', poke=publish)
        finally:
            pub.disconnect()
            pub.loop_stop()
            watch.send_signal(signal.SIGINT)
            watch.wait(10)


def test_ctl_watch_and_audit_work_against_the_demo_broker(tmp_path: Path) -> None:
    from device.vision.demo import make_demo

    replay = make_demo(tmp_path / "replay")
    run = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--source", f"replay:{replay}", "--state-dir", str(tmp_path / "st")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert run.stderr is not None
        banner = _Lines(run.stderr).wait_for("demo broker at", timeout=60)
        found = re.search(r"demo broker at (mqtt://\S+) \(mosquitto, MQTT 5\)", banner)
        assert found, banner
        url = found.group(1)
        # The printed `Try:` line works verbatim from a shell whose PATH has no venv in it.
        tried = banner.split("Try: ", 1)[1].strip()
        bare_path = {**os.environ, "PATH": "/usr/bin:/bin"}
        status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = subprocess.run(
                [*shlex.split(tried), "--timeout", "5"], cwd=tmp_path, env=bare_path, capture_output=True,
                text=True, timeout=60,
            )  # fmt: skip
            if status.returncode == 0:
                break
        assert status is not None and status.returncode == 0, (tried, status.stderr)
        assert status.stdout.startswith("ok status\n  online"), status.stdout
        watch = subprocess.Popen(
            [sys.executable, "-m", "device", "ctl", "--broker", url, "--id", "demo-terminal", "watch"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            assert watch.stdout is not None
            _Lines(watch.stdout).wait_for("[backend] status online")  # the retained status
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(10)
        audit = _faceonly("audit", "--broker", url, "--id", "demo-terminal", "--duration", "3")
        assert audit.returncode in (0, 3), audit.stdout + audit.stderr  # pass, or no face event in 3 s
        assert "/status" in audit.stderr and "Unsupported" not in audit.stdout + audit.stderr
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(30)
    assert run.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("tool", ["watch", "audit"])
def test_long_running_tools_stop_on_a_signal_even_as_a_background_job(tmp_path: Path, tool: str, sig) -> None:
    """`sh -c 'cmd & wait'` starts the job with SIGINT ignored (as CI's and cron's shells do): it still stops."""
    import shlex

    with Broker(tmp_path / "mq") as broker:
        args = {
            "watch": ["ctl", "--broker", broker.url, "--id", "t1", "watch"],
            "audit": ["audit", "--broker", broker.url, "--id", "t1", "--duration", "600"],
        }[tool]
        job = shlex.join([sys.executable, "-m", "device", *args])
        shell = subprocess.Popen(
            ["sh", "-c", f"{job} & echo $!; wait $!; echo exit=$?"], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            assert shell.stdout is not None and shell.stderr is not None
            pid = int(shell.stdout.readline())
            _Lines(shell.stderr).wait_for("watching")
            os.kill(pid, sig)
            out, _ = shell.communicate(timeout=15)
        finally:
            if shell.poll() is None:
                shell.kill()
        assert "exit=" in out and "Traceback" not in out
