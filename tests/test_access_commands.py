"""The door policy's commands on the terminal's component: a policy arrives whole (inline or chunked), verified,
stored encrypted and in force after a restart; an unsigned, forged, older or invalid one is refused with its
reason and the one in force stays; any arguments from the wire give a reply or a clear refusal. A damaged
record of used passes closes visitor passes and says so."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from device.access.component import AccessComponent
from device.config import load_config
from device.config.gate import GateConfig
from device.identity.gate import build_gate
from device.identity.transfer import chunk_proofs
from device.transport.commands import CommandError
from tests.access_parts import KEY, new_signer, signed, source, visitor_pass
from tests.terminal_keys import TerminalKeys

SIGNER = new_signer()
PASS_KEY = SigningKey(bytes(range(4, 36)))


TERMINAL = TerminalKeys()


class Plane:
    """The command plane's registry as the service gives it to the component."""

    def __init__(self) -> None:
        self.handlers: dict = {}
        self.flags: dict = {}

    def register(self, name, handler, *, read_only=False, replay_safe=False) -> None:
        self.handlers[name], self.flags[name] = handler, (read_only, replay_safe)


def handlers_of(access: AccessComponent) -> dict:
    plane = Plane()
    access.register(plane)  # type: ignore[arg-type]
    assert plane.flags["access.status"] == (True, False) and plane.flags["access.chunk"] == (False, True)
    return plane.handlers


def component(tmp: Path, door: str = "side") -> AccessComponent:
    pub = tmp / "policy.pub"
    pub.write_text(base64.b64encode(SIGNER.public_key).decode())
    cfg = load_config(
        None,
        {
            "service": {"state_dir": str(tmp / "state")},
            "gate": {"door": door},
            "access": {"enabled": True, "policy_public_key_file": str(pub)},
        },
    )
    gate = build_gate(GateConfig())
    return AccessComponent(cfg, SIGNER.public_key, KEY, None, gate, lambda p: None, TERMINAL.unseal)


@pytest.fixture(scope="module")
def updates():
    return {v: signed(source(pass_key=PASS_KEY), SIGNER, version=v) for v in (1, 2)}


def refused(call, args) -> str:
    with pytest.raises(CommandError) as caught:
        call(args)
    assert caught.value.code == "refused"
    return caught.value.details["reason"]


def test_a_policy_inline_then_chunked_then_refusals(tmp_path, updates) -> None:
    access = component(tmp_path)
    handlers = handlers_of(access)
    assert handlers["access.status"]({})["loaded"] is False
    v1 = updates[1]
    clear = base64.b64encode(v1.body).decode()
    assert refused(handlers["access.update"], {"manifest": v1.manifest, "body": clear}) == "not_sealed"
    body = TERMINAL.seal(v1.body)
    reply = handlers["access.update"]({"manifest": v1.manifest, "body": body})
    assert reply["access"]["version"] == 1 and reply["access"]["door_policy"]["mode"] == "credential"
    assert refused(handlers["access.update"], {"manifest": v1.manifest, "body": body}) == "not_newer"
    unsigned = {k: v for k, v in updates[2].manifest.items() if k != "signature"}
    assert refused(handlers["access.update"], {"manifest": unsigned, "body": body}) == "unsigned"
    forged = signed(source(), new_signer(), version=3)
    forged_body = TERMINAL.seal(forged.body)
    assert refused(handlers["access.update"], {"manifest": forged.manifest, "body": forged_body}) == "forged"
    with_v1_body = {"manifest": updates[2].manifest, "body": body}
    assert refused(handlers["access.update"], with_v1_body) == "forged"
    assert access.version == 1
    # v2 by chunks (small ones, so there are several), one of them wrong first
    v2 = signed(source(pass_key=PASS_KEY), SIGNER, version=2, chunk=512)
    size = v2.manifest["body"]["chunk_size"]
    started = handlers["access.sync"]({"manifest": v2.manifest})
    proofs = chunk_proofs(v2.manifest, v2.body)
    chunks = [v2.body[i * size : (i + 1) * size] for i in range(started["chunks"])]
    assert len(chunks) > 2
    tid = started["transfer"]
    with pytest.raises(CommandError, match="does not match"):
        handlers["access.chunk"](
            {"transfer": tid, "index": 0, "data": TERMINAL.seal(b"x"), "proof": proofs[0]}
        )
    in_clear = base64.b64encode(chunks[0]).decode()
    args = {"transfer": tid, "index": 0, "data": in_clear, "proof": proofs[0]}
    assert refused(handlers["access.chunk"], args) == "not_sealed"
    for index in started["missing"]:
        args = {"transfer": tid, "index": index, "data": TERMINAL.seal(chunks[index]), "proof": proofs[index]}
        reply = handlers["access.chunk"](args)
    assert reply["access"]["version"] == 2
    access.close()
    again = component(tmp_path)  # a restart: the stored policy, verified again
    assert again.version == 2 and again.summary()["people"] == 3
    raw = (tmp_path / "state" / "access.sealed").read_bytes()
    assert b"argon2" not in raw and b'"ann"' not in raw  # encrypted at rest
    again.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["access.update", "access.sync", "access.chunk", "access.status"]),
    args=st.dictionaries(
        st.sampled_from(["manifest", "body", "transfer", "index", "data", "extra"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=20),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        ),
        max_size=4,
    ),
)
def test_any_arguments_get_a_reply_or_a_refusal(tmp_path, name, args) -> None:
    access = component(tmp_path)
    try:
        assert isinstance(handlers_of(access)[name](args), dict)
    except CommandError as exc:
        assert exc.code in ("bad_request", "refused")
    finally:
        access.close()
    assert access.version == 0


def test_a_damaged_record_of_used_passes_closes_visitor_passes(tmp_path, updates) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "passes-used.json").write_text("[")
    access = component(tmp_path)
    access.apply_update(updates[1].manifest, updates[1].body)
    assert "every visitor pass is refused" in access.status()["problems"][0]
    access._credential(access.claims.qr(visitor_pass(PASS_KEY, time.time())))
    (event,) = access.take_events()
    assert event["access"]["reason"]["code"] == "access.pass_replayed" and event["access"]["gate"] == "shut"
    access.close()


def test_a_damaged_passage_record_is_set_aside_and_a_missing_reader_reported(tmp_path, updates) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "passages.json").write_text("{broken")
    pub = tmp_path / "policy.pub"
    pub.write_text(base64.b64encode(SIGNER.public_key).decode())
    cfg = load_config(
        None,
        {
            "service": {"state_dir": str(tmp_path / "state")},
            "gate": {"door": "side"},
            "access": {
                "enabled": True,
                "policy_public_key_file": str(pub),
                "badge_reader": "evdev:/dev/input/by-id/no-such-reader-event-kbd",
            },
        },
    )
    access = AccessComponent(
        cfg, SIGNER.public_key, KEY, None, build_gate(GateConfig()), lambda p: None, TERMINAL.unseal
    )
    problems = access.summary()["problems"]
    assert any("set aside" in p for p in problems) and any("badge reader" in p for p in problems)
    assert any("no door policy yet" in p for p in problems)
    assert [p.name for p in (tmp_path / "state").glob("passages.json.damaged-*")]
    assert len(access.passages) == 0
    access.close()
