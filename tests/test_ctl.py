"""`faceonly ctl`: the operator's command line against a running terminal and a real mosquitto."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.broker import Broker
from tests.control_keys import CommandKey
from tests.replay_faces import make_replay
from tests.test_transport_service import ROOT, TID, Terminal, _models_ready


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory):
    _models_ready()
    tmp = tmp_path_factory.mktemp("ctl")
    broker = Broker(tmp / "mq")
    key = CommandKey.generate(tmp / "key")
    term = Terminal(tmp, broker, make_replay(tmp / "replay", 2), conf_extra=key.toml())
    assert term.wait_for(lambda: "source finished" in term.text(), 60)
    yield broker, term, key
    term.stop()
    broker.kill()


def _ctl(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "device", "ctl", "--broker", broker.url, "--id", TID, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cmd_prints_the_reply_and_exit_status_tells(terminal) -> None:
    broker, _, key = terminal
    sign = ("--sign-key", str(key.private_file))
    ok = _ctl(broker, "cmd", "status")
    assert ok.returncode == 0, ok.stderr
    reply = json.loads(ok.stdout)
    assert reply["ok"] and reply["result"]["state"] == "online" and reply["terminal_id"] == TID
    unknown = _ctl(broker, "cmd", "no.such.command")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["error"]["code"]
    unsigned = _ctl(
        broker, "cmd", "config.set", "--args", '{"config": {"service": {"health_interval_s": 5}}}'
    )
    assert unsigned.returncode == 1 and json.loads(unsigned.stdout)["error"]["code"] == "unauthenticated"
    refused = _ctl(broker, *sign, "cmd", "config.set", "--args", '{"config": {"outbox": {"max_events": 0}}}')
    assert refused.returncode == 1 and "outbox.max_events" in refused.stdout
    args = '{"config": {"service": {"health_interval_s": 5}}}'
    applied = _ctl(broker, *sign, "cmd", "config.set", "--args", args)
    assert applied.returncode == 0, applied.stdout  # the README's example
    got = json.loads(_ctl(broker, "cmd", "config.get").stdout)
    assert got["result"]["config"]["service"]["health_interval_s"] == 5
    bad = _ctl(broker, "cmd", "status", "--args", "{not json")
    assert bad.returncode == 2 and "--args is not JSON" in bad.stderr


def test_desired_is_signed_and_applied(terminal) -> None:
    broker, _, key = terminal
    sign = ("--sign-key", str(key.private_file))
    unsigned = _ctl(broker, "desired", "--version", "4", "--config", "{}")
    assert unsigned.returncode == 2 and "--sign-key" in unsigned.stderr
    res = _ctl(
        broker, *sign, "desired", "--version", "4", "--config", '{"service": {"health_interval_s": 7}}'
    )
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 10
    got: dict = {}
    while time.monotonic() < deadline:
        got = json.loads(_ctl(broker, "cmd", "config.get").stdout)["result"]
        if got["version"] == 4:
            break
        time.sleep(0.3)
    assert got["version"] == 4 and got["config"]["service"]["health_interval_s"] == 7


def test_cmd_times_out_clearly_for_a_terminal_that_is_not_there(terminal) -> None:
    broker, _, _ = terminal
    cmd = [sys.executable, "-m", "device", "ctl", "--broker", broker.url, "--id", "nobody"]
    res = subprocess.run(
        [*cmd, "cmd", "status", "--timeout", "1.5"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 3 and "no reply from nobody" in res.stderr


def test_watch_prints_status_and_health_lines(terminal) -> None:
    broker, _, _ = terminal
    cmd = [sys.executable, "-m", "device", "ctl", "--broker", broker.url, "--id", TID, "watch"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("health" in ln for ln in lines):
            lines.append(proc.stdout.readline().rstrip())
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "\n".join(lines)
    assert "status online" in text  # the retained availability arrives first
    assert any(ln.startswith("[backend] health") for ln in lines), text
    assert proc.returncode == 0
