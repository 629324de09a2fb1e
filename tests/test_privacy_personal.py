"""No personal text on the wire: `faceonly audit` fails when an outbound payload holds a display name from the
gallery (in the clear, in another case or Unicode form, or inside a base64 blob) or a prompt carries free text;
names come from a list or from the terminal's own gallery (through its config and keys)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from device.cli import main as cli_main
from device.contracts import ModelRef, Prompt
from device.identity import gallery as gal
from device.identity import operator as op
from device.identity.runtime import Identity, load_curves
from device.infra.modelstore import ModelStore
from device.privacy.audit import AuditPolicy, audit_result, inspect_message
from device.privacy.personal import personal_text, usable_names
from device.privacy.signing import Signer
from device.runtime.prompts import mqtt_prompt_body
from device.transport.envelope import encode, envelope
from tests.broker import Broker
from tests.terminal_keys import TerminalKeys

PROMPT = "faceonly/v1/dev/t1/prompt"
NAMES = usable_names(["Angelina J.", "Zoë Ångström", "Al"])


def _verdicts(messages: list[tuple[str, bytes]], names=NAMES) -> dict[str, bool | None]:
    policy = AuditPolicy(names=names)
    result = audit_result([inspect_message(t, p, False, policy) for t, p in messages], policy)
    return {v["rule"]: v["passed"] for v in result["verdicts"]}


def _prompt(body: dict) -> bytes:
    return encode(envelope("prompt", "t1", body))


def test_the_old_prompt_with_a_greeting_fails_and_the_coded_one_passes() -> None:
    old = _prompt(
        {"track_id": 1, "state": "feedback", "code": "result.welcome", "text": "Welcome, Angelina J."}
    )
    v = _verdicts([(PROMPT, old)])
    assert v["personal_text"] is False and v["prompts_coded"] is False
    # Without a names list the free-text field alone fails the audit.
    assert _verdicts([(PROMPT, old)], names=())["prompts_coded"] is False
    coded = Prompt(1, "feedback", None, 0, 0, 0.0, "result.welcome", 1.0, {"subject": "angelina"})
    for with_subject in (False, True):
        ok = _verdicts([(PROMPT, _prompt(mqtt_prompt_body(coded, with_subject)))])
        assert ok["personal_text"] is True and ok["prompts_coded"] is True


def test_names_are_found_in_any_case_unicode_form_or_base64_in_either_direction() -> None:
    decomposed = "zoe\u0308 a\u030angstro\u0308m".upper()  # NFD, upper case
    hidden = base64.b64encode(("x" * 60 + "angelina j." + "y" * 20).encode()).decode()
    for doc in ({"note": decomposed}, {"blob": hidden}, {"Angelina J.": 1}):
        assert personal_text(doc, b"", NAMES), doc
    assert personal_text(None, "raw Zoë Ångström".encode(), NAMES) == ["payload: name #2"]
    assert personal_text({"code": "al.ok"}, b"", NAMES) == []  # too short to be told from a word
    gallery_push = json.dumps({"args": {"data": hidden}}).encode()
    v = _verdicts([("faceonly/v1/dev/t1/cmd/req/gallery.chunk", gallery_push)])
    assert v["personal_text"] is False  # from the backend in the clear: a name crossed the broker
    sealed = json.dumps({"args": {"data": TerminalKeys().seal(("x" * 60 + "Angelina J.").encode())}}).encode()
    assert _verdicts([("faceonly/v1/dev/t1/cmd/req/gallery.chunk", sealed)])["personal_text"] is True
    status = encode(envelope("status", "t1", {"state": "online", "who": "Angelina J."}))
    assert _verdicts([("faceonly/v1/dev/t1/status", status)])["personal_text"] is False


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "mosq") as b:
        yield b


def _publish_later(port: int, messages: list[tuple[str, bytes]], delay: float = 1.5) -> None:
    def run() -> None:
        time.sleep(delay)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", port)
        client.loop_start()
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()

    threading.Thread(target=run, daemon=True).start()


def _terminal_with_gallery(tmp: Path) -> Path:
    """A terminal's config and state dir holding a signed gallery with two named subjects."""
    store = ModelStore()
    entry = store.entry("embedder")
    ref = ModelRef("embedder", entry.file, entry.sha256)
    signer = Signer(SigningKey.generate())
    pub = tmp / "gallery.pub"
    pub.write_text(base64.b64encode(signer.public_key).decode())
    state = tmp / "state"
    rng = np.random.default_rng(1)
    subjects = [
        gal.check_subject(sid, name, (v := rng.normal(size=(1, 128))) / np.linalg.norm(v))
        for sid, name in (("ann", "Angelina J."), ("zoe", "Zoë Ångström"))
    ]
    identity = Identity(
        ref, load_curves(entry.info), signer.public_key, state / "gallery.sealed", state / "gallery.key", 1e-3
    )
    snap = op.snapshot(signer, subjects, 1, ref)
    identity.apply_update(snap.manifest, snap.body)
    config = tmp / "terminal.toml"
    config.write_text(
        f'terminal_id = "t1"\n[service]\nstate_dir = "{state}"\n[identity]\ngallery_public_key_file = "{pub}"\n'
    )
    return config


def test_cli_reads_the_names_from_the_terminals_gallery_or_a_list(tmp_path, broker, capsys) -> None:
    config = _terminal_with_gallery(tmp_path)
    leak = _prompt(
        {"track_id": 1, "state": "feedback", "code": "result.welcome", "text": "Hello ZOË ÅNGSTRÖM"}
    )
    face = encode(envelope("event.face", "t1", {"observation": {"decision": "accepted"}}))
    argv = ["audit", "--broker", broker.url, "--id", "t1", "--count", "1", "--timeout", "30"]
    _publish_later(broker.port, [(PROMPT, leak), ("faceonly/v1/dev/t1/event/face", face)])
    assert cli_main([*argv, "--gallery-config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] personal_text: -> faceonly/v1/dev/t1/prompt text: name #" in out
    assert (
        "ÅNGSTRÖM" not in out.split("personal_text", 1)[1].splitlines()[0]
    )  # the finding never repeats a name
    names = tmp_path / "names.txt"
    names.write_text("# one per line\nSomeone Else\n")
    _publish_later(broker.port, [(PROMPT, leak), ("faceonly/v1/dev/t1/event/face", face)])
    assert cli_main([*argv, "--names", str(names)]) == 1  # the free-text field still fails prompts_coded
    out = capsys.readouterr().out
    assert "[PASS] personal_text" in out and "[FAIL] prompts_coded: free text in prompts" in out
    assert cli_main([*argv, "--gallery-config", str(tmp_path / "missing.toml")]) == 2
