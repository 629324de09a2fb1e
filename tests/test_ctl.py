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
    ok = _ctl(broker, "cmd", "status", "--json")
    assert ok.returncode == 0, ok.stderr
    reply = json.loads(ok.stdout)
    assert reply["ok"] and reply["result"]["state"] == "online" and reply["terminal_id"] == TID
    unknown = _ctl(broker, "cmd", "no.such.command", "--json")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["error"]["code"]
    unsigned = _ctl(
        broker, "cmd", "config.set", "--args", '{"config": {"service": {"health_interval_s": 5}}}'
    )
    assert unsigned.returncode == 1 and unsigned.stderr.startswith("error unauthenticated:"), unsigned.stderr
    refused = _ctl(broker, *sign, "cmd", "config.set", "--args", '{"config": {"outbox": {"max_events": 0}}}')
    assert refused.returncode == 1 and "outbox.max_events" in refused.stderr
    args = '{"config": {"service": {"health_interval_s": 5}}}'
    applied = _ctl(broker, *sign, "cmd", "config.set", "--args", args)
    assert applied.returncode == 0, applied.stdout  # the README's example
    # For a person: a few lines, not the 160-line config the reply carries (--json prints that).
    assert applied.stdout.splitlines() == [
        "ok config.set",
        "  applied (config version None)",
        "  all of it is in effect now",
    ]
    summary = _ctl(broker, "cmd", "status").stdout
    assert summary.startswith("ok status\n  online, software") and "alarms: none" in summary, summary
    assert len(summary.splitlines()) <= 6
    got = json.loads(_ctl(broker, "cmd", "config.get", "--json").stdout)
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
        got = json.loads(_ctl(broker, "cmd", "config.get", "--json").stdout)["result"]
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


def test_replies_read_as_a_person_would_want_them() -> None:
    from device.cli.ctl_show import show_reply
    from device.runtime.demo_broker import describe

    ids = [f"emp-{i:04d}" for i in range(25)]
    listing = {
        "loaded": True,
        "version": 3,
        "count": 25,
        "templates": 27,
        "threshold": {"threshold": 0.95},
        "threshold_meaning": "at this gallery size (27 templates), expect about 1 false accept per 1,000 strangers",
        "ids": ids,
    }
    text = show_reply("gallery.list", {"ok": True, "result": listing})
    assert "gallery v3: 25 subjects, 27 templates, threshold 0.95" in text
    assert "expect about 1 false accept per 1,000 strangers" in text
    status = {"state": "running", "identity": listing}
    assert "threshold 0.95: at this gallery size (27 templates)" in show_reply(
        "status", {"ok": True, "result": status}
    )
    assert "emp-0000, emp-0001" in text and "and 5 more" in text and "emp-0024" not in text
    verify = {
        "ok": False,
        "models": [{"name": "a", "ok": True}, {"name": "b", "ok": False, "problem": "sha256"}],
    }
    assert "1/2 models verified" in show_reply("models.verify", {"ok": True, "result": verify})
    cached = {
        "ok": True,
        "models": [{"name": "a", "ok": True, "rehashed": False}, {"name": "b", "ok": True, "rehashed": True}],
    }
    shown = show_reply("models.verify", {"ok": True, "result": cached})
    assert (
        "2/2 models verified against the manifest (1 hashed now, 1 unchanged since their last hash)" in shown
    )
    refused = {
        "ok": False,
        "error": {"code": "bad_request", "message": "config refused", "details": ["a.b: no"]},
    }
    assert show_reply("config.set", refused) == "error bad_request: config refused\n  a.b: no"
    generic = show_reply("outbox.purge", {"ok": True, "result": {"purged": 3, "big": {"x": 1}}})
    assert generic == "ok outbox.purge\n  purged: 3\n  big: {1 fields}"
    # ctl watch names who matched on the terminal (a subject id: names never travel on MQTT)
    event = {"type": "event.face", "id": "e1", "observation": {"decision": "accepted", "track_id": 1}}
    line = describe(
        "t/event/face", json.dumps({**event, "match": {"subject": "emp-0042", "score": 0.97}}).encode()
    )
    assert "matched=emp-0042 score=0.97" in line
