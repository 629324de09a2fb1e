"""Command plane: every request gets exactly one reply; bad requests get a clear error and change nothing.

State-changing commands are signed here with a test command key (tests/control_keys.py); the
authentication itself is tested in test_command_auth.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.config import Config
from device.runtime.runtime_config import RuntimeConfig
from device.transport.auth import Authenticator
from device.transport.commands import (
    BAD_JSON,
    BAD_REQUEST,
    EXPIRED,
    INVALID_CONFIG,
    NOT_AVAILABLE,
    TOO_LARGE,
    UNKNOWN_COMMAND,
    CommandError,
    CommandPlane,
)
from device.transport.nonces import ReplayCache
from device.transport.replies import ReplyPolicy
from device.transport.topics import Topics
from tests.control_keys import CommandKey

TOPICS = Topics("faceonly", "t1")
DEFAULT = TOPICS.cmd_res
NOW = 1000.0


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> CommandKey:
    return CommandKey.generate(tmp_path_factory.mktemp("cmdkey"))


def make_plane(key: CommandKey, state: Path, max_bytes: int = 1024, clock=lambda: NOW) -> CommandPlane:
    """A plane as the service builds it: this key trusted, replies to backend/# and b/# allowed."""
    auth = Authenticator(
        "t1",
        key.public_key,
        ReplayCache(state / "nonces.json", clock=clock),
        window_s=300,
        clock_skew_s=30,
        clock=clock,
    )
    return CommandPlane(
        DEFAULT, max_bytes, clock, auth=auth, replies=ReplyPolicy(TOPICS, ("backend/#", "b/#"))
    )


@pytest.fixture
def plane(key: CommandKey, tmp_path: Path) -> CommandPlane:
    p = make_plane(key, tmp_path)
    p.register("status", lambda args: {"state": "online"}, read_only=True)
    p.register("echo", lambda args: {"args": args})

    def refuse(args):
        raise CommandError("failed", "nope")

    p.register("refuse", refuse)
    p.register("crash", lambda args: 1 / 0)
    return p


def _err(reply) -> str:
    assert reply.body["ok"] is False
    return reply.body["error"]["code"]


def test_ok_reply_with_v5_address(plane: CommandPlane) -> None:
    r = plane.handle("status", b'{"id": "r1"}', "backend/res", b"\x01\x02")
    assert r.topic == "backend/res" and r.correlation == b"\x01\x02"
    assert r.body == {"command": "status", "request_id": "r1", "ok": True, "result": {"state": "online"}}


def test_311_address_in_payload(plane: CommandPlane, key: CommandKey) -> None:
    signed = key.fields("echo", {"x": 1}, now=NOW)
    r = plane.handle(
        "echo", json.dumps({"reply_to": "b/r", "correlation_id": "c9", **signed}).encode(), None, None
    )
    assert (r.topic, r.correlation_id, r.body["result"]) == ("b/r", "c9", {"args": {"x": 1}})


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        ("status", b"{not json", BAD_JSON),
        ("status", b"\xff\xfe", BAD_JSON),
        ("status", b"NaN", BAD_JSON),
        # Too deep: refused before parsing (the size limit here is 1 KB).
        pytest.param("status", b"[" * 1000, BAD_JSON, id="status-1000-open-brackets"),
        pytest.param(
            "status", b'{"args": {"x": ' + b"[" * 400 + b"]" * 400 + b"}}", BAD_JSON, id="status-400-deep"
        ),
        ("status", b'{"args": {"x": 1e400}}', BAD_JSON),
        ("status", b"[1,2]", BAD_REQUEST),
        ("status", b'{"args": 3}', BAD_REQUEST),
        ("status", b'{"expires_at": "soon"}', BAD_REQUEST),
        ("status", b'{"surprise": 1}', BAD_REQUEST),
        ("status", b'{"expires_at": 999}', EXPIRED),
        ("status", b"x" * 2000, TOO_LARGE),
        ("nope", b"{}", UNKNOWN_COMMAND),
        ("../../x", b"{}", UNKNOWN_COMMAND),
        ("enroll", b"{}", NOT_AVAILABLE),
        ("gallery.add", b"{}", NOT_AVAILABLE),
        ("subject.purge", b"{}", NOT_AVAILABLE),
        ("refuse", "signed", "failed"),
        ("crash", "signed", "internal_error"),
        ("refuse", b"{}", "unauthenticated"),
    ],
)
def test_error_replies(plane: CommandPlane, key: CommandKey, name: str, payload, code: str) -> None:
    if payload == "signed":
        payload = key.request(name, now=NOW)
    r = plane.handle(name, payload, "backend/res", b"c")
    assert _err(r) == code and r.topic == "backend/res" and r.correlation == b"c"
    assert r.body["error"]["message"]


def test_bad_reply_topic_falls_back_to_default(plane: CommandPlane) -> None:
    r = plane.handle("status", b"{}", "a/+/b", None)
    assert r.topic == DEFAULT and _err(r) == "bad_reply_topic"
    assert plane.handle("status", b'{"reply_to": "#"}', None, None).topic == DEFAULT


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(max_size=20),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=10) | st.integers(),
            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    response_topic=st.none() | st.text(max_size=20),
    correlation=st.none() | st.binary(max_size=20),
)
def test_any_request_gets_one_well_formed_reply(name, payload, response_topic, correlation) -> None:
    p = CommandPlane(DEFAULT, max_bytes=1024, replies=ReplyPolicy(TOPICS, ("backend/#",)))
    p.register("status", lambda args: {"ok": 1}, read_only=True)
    r = p.handle(name, payload, response_topic, correlation)
    assert isinstance(r.topic, str) and r.topic
    assert set(r.body) >= {"command", "request_id", "ok"}
    assert ("result" in r.body) == r.body["ok"]
    if not r.body["ok"]:
        assert r.body["error"]["code"] and r.body["error"]["message"]
    json.dumps(r.body)


def test_config_set_refuses_invalid_and_locked_keys_running_config_stays(tmp_path: Path) -> None:
    from device.config import ConfigError

    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    before = rt.current
    for bad in (
        {"outbox": {"max_events": -1}},
        {"outbox": {"max_age_s": 0.001}},  # would silently expire every queued event
        {"vision": {"liveness": {"policy": "off"}}},
        {"vision": {"source": "replay:/nonexistent"}},
        {"mqtt": {"broker": "mqtt://evil:1"}},
        {"terminal_id": "x"},
        {"privacy": {"seal": False}},  # a broker publisher must not be able to weaken privacy
        {"service": {"models_dir": "/tmp/other-models"}},
        {"nope": 1},
    ):
        with pytest.raises(ConfigError) as exc:
            rt.apply(bad)
        assert exc.value.problems
        assert rt.current is before
    assert not (tmp_path / "config-overrides.json").exists()
    result = rt.apply({"service": {"health_interval_s": 2.5, "num_threads": 2}}, version=7)
    assert result["restart_required"] == ["service.num_threads"]
    again = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))  # persisted across restarts
    assert again.current.service.health_interval_s == 2.5 and again.version == 7


def _tiny_models(root: Path) -> Path:
    """A one-file model store (the shipped models may not be built in this checkout)."""
    import hashlib

    root.mkdir()
    blob = b"not a model, a data file"
    (root / "stats.npz").write_bytes(blob)
    entry = {
        "file": "stats.npz",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "kind": "data",
    }
    (root / "manifest.json").write_text(json.dumps({"format": 1, "models": {"stats": entry}}))
    return root


@dataclass
class State:
    """The terminal state the built-in commands act on (device.runtime.control.TerminalState), real parts."""

    runtime: RuntimeConfig
    store: Any
    outbox: Any
    protector: Any
    plane: CommandPlane
    restarts: list[str] = field(default_factory=list)
    applied: list[dict] = field(default_factory=list)

    def status(self) -> dict:
        return {"state": "online"}

    def config_applied(self, result: dict) -> None:
        self.applied.append(result)

    def request_restart(self, reason: str) -> None:
        self.restarts.append(reason)

    def describe_control(self) -> dict:
        return self.plane.describe_auth()


def test_invalid_config_code_used_by_handler(tmp_path: Path, key: CommandKey) -> None:
    from device.config.mqtt import OutboxConfig
    from device.infra.modelstore import ModelStore
    from device.privacy.protector import build_protector
    from device.runtime.control import register_all
    from device.transport.outbox import Outbox

    plane = make_plane(key, tmp_path, 4096, clock=time.time)
    cfg = Config(service={"state_dir": str(tmp_path)})
    rt = RuntimeConfig(cfg)
    state = State(
        rt, ModelStore(_tiny_models(tmp_path / "models")), Outbox(tmp_path / "outbox", OutboxConfig()),
        build_protector(cfg, tmp_path), plane,
    )  # fmt: skip
    register_all(plane, state)
    r = plane.handle(
        "config.set", key.request("config.set", {"config": {"outbox": {"max_events": 0}}}), None, None
    )
    assert _err(r) == INVALID_CONFIG and "outbox.max_events" in r.body["error"]["details"][0]
    r = plane.handle("config.set", key.request("config.set", {"config": 5}), None, None)
    assert _err(r) == BAD_REQUEST
    r = plane.handle("config.get", b'{"args": {"x": 1}}', None, None)
    assert _err(r) == BAD_REQUEST
    r = plane.handle("models.verify", b"{}", None, None)
    assert r.body["result"]["ok"] is True
    (tmp_path / "models" / "stats.npz").write_bytes(b"tampered")
    r = plane.handle("models.verify", b"{}", None, None)
    assert r.body["ok"] and r.body["result"]["ok"] is False
    r = plane.handle("privacy.report", b"{}", None, None)
    assert r.body["ok"] and r.body["result"]
    assert r.body["result"]["control"]["signed_commands"] is True


def test_unsigned_lab_setting_is_loud_in_privacy_report(tmp_path: Path) -> None:
    from device.config.mqtt import OutboxConfig
    from device.infra.modelstore import ModelStore
    from device.privacy.protector import build_protector
    from device.runtime.control import register_all
    from device.transport.outbox import Outbox

    auth = Authenticator(
        "t1", None, ReplayCache(tmp_path / "n.json"), window_s=300, clock_skew_s=30, allow_unsigned=True
    )
    plane = CommandPlane(DEFAULT, 4096, auth=auth)
    cfg = Config(service={"state_dir": str(tmp_path)})
    state = State(
        RuntimeConfig(cfg), ModelStore(_tiny_models(tmp_path / "models")),
        Outbox(tmp_path / "outbox", OutboxConfig()), build_protector(cfg, tmp_path), plane,
    )  # fmt: skip
    register_all(plane, state)
    calls = state.restarts
    report = plane.handle("privacy.report", b"{}", None, None).body["result"]
    assert report["text"].startswith("WARNING: UNSAFE LAB SETTING")
    assert report["control"]["unsigned_allowed"] is True
    assert plane.handle("restart", b"{}", None, None).body["ok"] and calls == ["requested"]
