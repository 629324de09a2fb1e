"""Signed commands, retained and stale requests, reply topics: refused with a clear code, no effect."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.transport.auth import Authenticator, read_signing_key
from device.transport.commands import CommandPlane
from device.transport.nonces import ReplayCache
from device.transport.replies import ReplyPolicy, default_namespaces
from device.transport.topics import Topics
from tests.control_keys import CommandKey

TOPICS = Topics("faceonly", "t1")
BACKEND = "faceonly/v1/backend/replies"
ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> CommandKey:
    return CommandKey.generate(tmp_path_factory.mktemp("key"))


def build(key: CommandKey | None, state: Path, clock: Clock, *, allow_unsigned: bool = False):
    """(plane, calls): `restart` and `status` registered; `calls` records every handler run."""
    auth = Authenticator(
        "t1",
        key.public_key if key else None,
        ReplayCache(state / "nonces.json", clock=clock),
        window_s=300,
        clock_skew_s=30,
        allow_unsigned=allow_unsigned,
        clock=clock,
    )
    plane = CommandPlane(
        TOPICS.cmd_res,
        64 * 1024,
        clock,
        auth=auth,
        replies=ReplyPolicy(TOPICS, default_namespaces("faceonly")),
        max_age_s=330,
    )
    calls: list[str] = []
    plane.register("restart", lambda args: calls.append("restart") or {"restarting": True})
    plane.register("status", lambda args: calls.append("status") or {"state": "online"}, read_only=True)
    return plane, calls


def code(reply) -> str | None:
    return None if reply.body["ok"] else reply.body["error"]["code"]


def test_signed_command_runs_once_and_a_replay_is_refused(key: CommandKey, tmp_path: Path) -> None:
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    req = key.request("restart", {"reason": "x"}, now=clock.now)
    assert code(plane.handle("restart", req, BACKEND, b"1")) is None and calls == ["restart"]
    assert code(plane.handle("restart", req, BACKEND, b"2")) == "replayed"
    # The replay cache is on disk: a restarted terminal still refuses it within the window.
    plane2, calls2 = build(key, tmp_path, clock)
    assert code(plane2.handle("restart", req, BACKEND, b"3")) == "replayed" and calls2 == []
    assert calls == ["restart"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d, k: d.pop("signature"), "unauthenticated"),
        (lambda d, k: d["args"].update(reason="other"), "unauthenticated"),
        (
            lambda d, k: d.update(k.fields("restart", {"reason": "x"}, terminal="t2", now=d["issued_at"])),
            "unauthenticated",
        ),
        (lambda d, k: d.update(nonce="A" * 20), "unauthenticated"),
        (lambda d, k: d["signature"].update(value="AAAA"), "unauthenticated"),
        (
            lambda d, k: d.update(k.fields("restart", {"reason": "x"}, now=d["issued_at"] - 30 * 86400)),
            "expired",
        ),
        (lambda d, k: d.update(k.fields("restart", {"reason": "x"}, now=d["issued_at"] + 600)), "expired"),
        (
            lambda d, k: d.update(k.fields("restart", {"reason": "x"}, now=d["issued_at"], ttl_s=3600)),
            "expired",
        ),
    ],
    ids=[
        "unsigned",
        "args-changed",
        "other-terminal",
        "nonce-changed",
        "bad-value",
        "30-days-old",
        "future",
        "too-long",
    ],
)
def test_refused_without_effect(key: CommandKey, tmp_path: Path, mutate, expected: str) -> None:
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    data = json.loads(key.request("restart", {"reason": "x"}, now=clock.now))
    mutate(data, key)
    reply = plane.handle("restart", json.dumps(data).encode(), BACKEND, b"c")
    assert code(reply) == expected, reply.body
    assert calls == [] and not (tmp_path / "nonces.json").exists()


def test_a_different_key_is_refused(key: CommandKey, tmp_path: Path) -> None:
    other = CommandKey.generate(tmp_path / "other")
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    assert (
        code(plane.handle("restart", other.request("restart", now=clock.now), BACKEND, None))
        == "unauthenticated"
    )
    assert calls == [] and plane.counts["unauthenticated"] == 1


def test_no_key_refuses_every_state_changing_command_but_reads_work(key: CommandKey, tmp_path: Path) -> None:
    clock = Clock()
    plane, calls = build(None, tmp_path, clock)
    assert (
        code(plane.handle("restart", key.request("restart", now=clock.now), BACKEND, None))
        == "unauthenticated"
    )
    assert code(plane.handle("status", b"{}", BACKEND, None)) is None and calls == ["status"]


def test_lab_setting_accepts_unsigned_and_says_so(tmp_path: Path) -> None:
    plane, calls = build(None, tmp_path, Clock(), allow_unsigned=True)
    assert code(plane.handle("restart", b"{}", BACKEND, None)) is None and calls == ["restart"]
    assert "UNSAFE" in plane.describe_auth()["warning"]


def test_retained_requests_never_execute_even_signed(key: CommandKey, tmp_path: Path) -> None:
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    reply = plane.handle("restart", key.request("restart", now=clock.now), BACKEND, b"c", retained=True)
    assert code(reply) == "retained" and reply.topic == BACKEND
    assert code(plane.handle("status", b"{}", BACKEND, b"c", retained=True)) == "retained"
    assert calls == [] and plane.counts["retained"] == 2


def test_stale_unsigned_read_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    plane, calls = build(None, tmp_path, clock)
    old = json.dumps({"sent_at": clock.now - 30 * 86400}).encode()
    assert code(plane.handle("status", old, BACKEND, None)) == "expired" and calls == []


@pytest.mark.parametrize(
    "topic",
    [
        f"{TOPICS.base}/event/face",
        f"{TOPICS.base}/status",
        f"{TOPICS.base}/config/desired",
        f"{TOPICS.base}/config/reported",
        f"{TOPICS.base}/cmd/req/restart",
        f"{TOPICS.base}/cmd/resX",
        "faceonly/v1/dev/t2/cmd/res",
        "$SYS/broker/x",
        "$share/g/faceonly/v1/backend/x",
        "faceonly/v1/backend/+",
        "faceonly/v1/backend/#",
        "elsewhere/x",
    ],
)
def test_reply_topics_outside_the_namespace_are_refused_and_counted(
    key: CommandKey, tmp_path: Path, topic: str
) -> None:
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    for response_topic, payload in ((topic, b"{}"), (None, json.dumps({"reply_to": topic}).encode())):
        reply = plane.handle("status", payload, response_topic, b"c")
        assert reply.topic == TOPICS.cmd_res and code(reply) in ("bad_reply_topic", "bad_request")
    signed = key.request("restart", now=clock.now)
    assert code(plane.handle("restart", signed, topic, b"c")) == "bad_reply_topic"
    assert calls == [] and plane.counts["reply_refused"] >= 2


@pytest.mark.parametrize("topic", [f"{TOPICS.cmd_res}", f"{TOPICS.cmd_res}/ctl-1", "faceonly/v1/backend/a/b"])
def test_reply_topics_in_the_namespace_are_used(tmp_path: Path, topic: str) -> None:
    plane, _ = build(None, tmp_path, Clock())
    assert plane.handle("status", b"{}", topic, None).topic == topic


# ---- the envelope/signature parser under hypothesis --------------------------------------------

_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=8).map(lambda b: b.hex())
)
_auth_keys = ("terminal", "issued_at", "expires_at", "nonce", "signature", "args")


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    changes=st.dictionaries(
        st.sampled_from(_auth_keys),
        _values | st.dictionaries(st.sampled_from(["alg", "key_id", "value", "x"]), _values, max_size=4),
        max_size=4,
    ),
    drop=st.sets(st.sampled_from(_auth_keys)),
)
def test_any_altered_signed_request_is_refused_and_runs_nothing(
    key: CommandKey, tmp_path_factory, changes, drop
) -> None:
    clock = Clock()
    state = tmp_path_factory.mktemp("h")
    plane, calls = build(key, state, clock)
    original = json.loads(key.request("restart", {"reason": "x"}, now=clock.now))
    data = {k: v for k, v in {**original, **changes}.items() if k not in drop}
    try:
        payload = json.dumps(data, allow_nan=False).encode()
    except ValueError:
        payload = json.dumps(data).encode()  # NaN/Infinity tokens: refused as bad JSON
    reply = plane.handle("restart", payload, BACKEND, b"c")
    assert set(reply.body) >= {"command", "request_id", "ok"} and reply.topic == BACKEND
    if data == original:
        assert reply.body["ok"] and calls == ["restart"]
    else:
        assert not reply.body["ok"] and calls == [], (data, reply.body)
        assert reply.body["error"]["code"] in ("unauthenticated", "expired", "bad_request", "bad_json")


# ---- the replay cache ---------------------------------------------------------------------------


def test_replay_cache_forgets_after_the_window_and_is_bounded(tmp_path: Path) -> None:
    from device.transport.nonces import CacheFull

    clock, mono = Clock(), Clock(50.0)
    cache = ReplayCache(tmp_path / "n.json", capacity=2, clock=clock, monotonic=mono)
    cache.add("a" * 16, clock.now + 10)
    cache.add("b" * 16, clock.now + 20)
    with pytest.raises(CacheFull):
        cache.add("c" * 16, clock.now + 30)
    assert cache.seen("a" * 16)
    clock.now += 15
    mono.now += 15
    assert not cache.seen("a" * 16) and cache.seen("b" * 16)
    cache.add("c" * 16, clock.now + 30)  # the expired one made room
    assert len(ReplayCache(tmp_path / "n.json", clock=clock, monotonic=mono)) == 2
    assert stat.S_IMODE(os.stat(tmp_path / "n.json").st_mode) == 0o600


def test_a_wall_clock_step_cannot_make_a_seen_command_acceptable_again(
    key: CommandKey, tmp_path: Path
) -> None:
    """A Pi has no RTC: NTP steps its clock after boot. Nonces are kept by the monotonic clock too."""
    clock, mono = Clock(), Clock(50.0)
    cache = ReplayCache(tmp_path / "n.json", clock=clock, monotonic=mono)
    cache.add("a" * 16, clock.now + 330)
    clock.now += 3600  # stepped forward: by the wall clock its window is long gone
    cache.add("b" * 16, clock.now + 330)  # (adding prunes what is no longer live)
    assert cache.seen("a" * 16)
    clock.now -= 3600  # and back: the request's own window is open again; the nonce is still there
    mono.now += 100
    assert cache.seen("a" * 16)
    mono.now += 231
    clock.now += 331
    assert not cache.seen("a" * 16)


def test_a_full_replay_cache_refuses_as_busy(key: CommandKey, tmp_path: Path) -> None:
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    assert plane.auth is not None
    plane.auth.cache.capacity = 1
    assert code(plane.handle("restart", key.request("restart", now=clock.now), BACKEND, None)) is None
    assert code(plane.handle("restart", key.request("restart", now=clock.now), BACKEND, None)) == "busy"
    assert calls == ["restart"]


# ---- key files ------------------------------------------------------------------------------------


def test_keys_generate_writes_the_documented_files(tmp_path: Path) -> None:
    import base64

    out = tmp_path / "cmd.key"
    run = [sys.executable, "-m", "device", "keys", "generate", "--out", str(out)]
    res = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    seed = base64.b64decode(out.read_text())
    public = base64.b64decode((tmp_path / "cmd.key.pub").read_text())
    assert len(seed) == 32 and len(public) == 32
    assert bytes(read_signing_key(out).verify_key) == public
    again = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr
    assert base64.b64decode(out.read_text()) == seed  # not replaced


def test_ctl_refuses_an_unreadable_sign_key_before_connecting(tmp_path: Path) -> None:
    ctl = [sys.executable, "-m", "device", "ctl", "--broker", "mqtt://127.0.0.1:1", "--id", "t1"]
    bad = tmp_path / "bad.key"
    bad.write_text("not base64!")
    for key_file in (bad, tmp_path / "missing.key"):
        res = subprocess.run(
            [*ctl, "--sign-key", str(key_file), "cmd", "restart"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 2 and f"command key {key_file}" in res.stderr, res.stderr


def test_only_handlers_registered_read_only_run_unsigned(key: CommandKey, tmp_path: Path) -> None:
    """What may run unsigned is declared with the handler, not inferred from its name."""
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    plane.register("models.verify", lambda args: calls.append("verify") or {"ok": True})  # not declared
    assert code(plane.handle("models.verify", b"{}", BACKEND, None)) == "unauthenticated" and calls == []
    plane.register("models.verify", lambda args: calls.append("verify") or {"ok": True}, read_only=True)
    assert code(plane.handle("models.verify", b"{}", BACKEND, None)) is None and calls == ["verify"]
    assert plane.describe_auth()["read_only_commands"] == ["models.verify", "status"]
    plane.register("status", lambda args: {"state": "online"})  # re-registered as state-changing
    assert code(plane.handle("status", b"{}", BACKEND, None)) == "unauthenticated"


def test_a_replay_safe_command_is_signed_but_its_nonce_is_not_recorded(
    key: CommandKey, tmp_path: Path
) -> None:
    """gallery.chunk: checked against the signed manifest and stored once, so a replay does nothing more;
    recording ~1,600 nonces (fsync each) for one large gallery would only cost time and cache slots."""
    clock = Clock()
    plane, calls = build(key, tmp_path, clock)
    plane.register("put", lambda args: calls.append("put") or {}, replay_safe=True)
    assert code(plane.handle("put", b"{}", BACKEND, None)) == "unauthenticated" and calls == []
    signed = key.request("put", {"index": 1}, now=clock.now)
    assert code(plane.handle("put", signed, BACKEND, None)) is None
    assert code(plane.handle("put", signed, BACKEND, None)) is None and calls == ["put", "put"]
    assert len(plane.auth.cache) == 0
    forged = json.loads(signed)
    forged["args"]["index"] = 2
    assert code(plane.handle("put", json.dumps(forged).encode(), BACKEND, None)) == "unauthenticated"
    with pytest.raises(ValueError):
        plane.register("both", lambda args: {}, read_only=True, replay_safe=True)
