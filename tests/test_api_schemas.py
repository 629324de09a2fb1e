"""The shipped AsyncAPI document and JSON Schemas: well-formed, complete, and matching real payloads."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from device.config import Config
from device.contracts import CODES
from device.runtime.runtime_config import RuntimeConfig
from device.transport.commands import CommandPlane
from device.transport.envelope import envelope
from device.wire.access import EVENT_ACCESS_PARTS
from device.wire.payloads import EVENT_FACE_PARTS
from device.wire.schemas import render, schema_documents
from tests.api_schemas import SCHEMAS, errors
from tests.control_keys import CommandKey

API = SCHEMAS.parent / "asyncapi.yaml"


def test_schemas_are_valid_and_every_asyncapi_ref_resolves() -> None:
    for path in SCHEMAS.glob("*.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text()))
    doc = yaml.safe_load(API.read_text())
    assert doc["asyncapi"].startswith("2.6")
    refs = [m["payload"]["$ref"] for m in doc["components"]["messages"].values()]
    assert all((API.parent / r).is_file() for r in refs)
    parts = {f"{name}.json" for name in EVENT_FACE_PARTS}  # referenced by event-face.json
    parts |= {f"{name}.json" for name in EVENT_ACCESS_PARTS}  # referenced by event-access.json
    files = {"replay-manifest.json", "model-manifest.json"}  # file formats, not messages
    assert {Path(r).name for r in refs} | {"envelope.json"} | parts | files == {
        p.name for p in SCHEMAS.glob("*.json")
    }


def test_generated_schemas_equal_the_committed_ones() -> None:
    docs = schema_documents()
    assert {"command-request.json", "command-reply.json", "config-desired.json"} <= set(docs)
    assert {"replay-manifest.json", "model-manifest.json", "observation.json"} <= set(docs)
    for filename, doc in docs.items():
        assert (SCHEMAS / filename).read_text(encoding="utf-8") == render(doc), (
            f"{filename} is stale: run `python -m device.wire.schemas`"
        )
    event = json.loads((SCHEMAS / "event-face.json").read_text())
    for name in EVENT_FACE_PARTS:
        assert event["properties"][name] == {"$ref": f"{name}.json"}


def test_every_reason_code_is_in_the_schema_and_a_new_field_is_refused() -> None:
    observation = json.loads((SCHEMAS / "observation.json").read_text())
    assert set(observation["$defs"]["ReasonItem"]["properties"]["code"]["enum"]) == set(CODES)
    sample = {
        "track_id": 1, "decision": "rejected", "time_source": "camera_utc", "first_seen": 1.0,
        "last_seen": 2.0, "best_frame_time": 1.5, "box": [0, 0, 1, 1], "quality": {"face_px": 80.0},
        "liveness": {"steps_passed": 0.0}, "reasons": [{"code": "liveness.no_blink", "text": "no blink"}],
        "alignment": None,
    }  # fmt: skip
    assert errors(sample, "observation.json") == []
    assert errors({**sample, "surprise": 1}, "observation.json")  # a field without a schema fails
    assert errors({**sample, "quality": {"face_px": 1.0, "new_measure": 2.0}}, "observation.json")
    assert errors({**sample, "reasons": [{"code": "made.up", "text": "x"}]}, "observation.json")


def signed_sig(key: CommandKey) -> dict:
    return json.loads(key.desired({}, 1))["signature"]


def test_real_payloads_validate_and_broken_ones_do_not(tmp_path: Path) -> None:
    plane = CommandPlane("x/cmd/res", 1024)
    plane.register("status", lambda a: {"state": "online"}, read_only=True)
    for req in (b"{}", b"{bad", b'{"args": 1}'):
        reply = plane.handle("status", req, "r/t", b"c1")
        payload = envelope("command.reply", "t1", reply.body, ttl_s=60, correlation_id=reply.correlation_id)
        assert errors(payload) == [], payload
    rt = RuntimeConfig(Config(service={"state_dir": str(tmp_path)}))
    reported = envelope("config.reported", "t1", {**rt.report(), "applied": True, "problems": []})
    assert errors(reported) == []
    bad = dict(reported, schema=2)
    assert errors(bad)
    extra = dict(reported, surprise=1)
    assert errors(extra)
    key = CommandKey.generate(tmp_path / "key")
    assert errors(json.loads(key.desired({}, 1)), "config-desired.json") == []
    # Unsigned is a valid shape (the terminal refuses it as unauthenticated, unless the lab setting), but a
    # signature without the fields it signs is not.
    assert errors({"schema": 1, "config": {}}, "config-desired.json") == []
    assert errors({"schema": 1, "config": {}, "signature": signed_sig(key)}, "config-desired.json")
    signed = json.loads(key.request("restart", {"reason": "x"}))
    assert errors(signed, "command-request.json") == []
    assert errors({**signed, "nonce": "short"}, "command-request.json")
    assert errors({"args": {}, "reply_to": "a/b", "correlation_id": "c"}, "command-request.json") == []
    assert errors({"args": 3}, "command-request.json")
