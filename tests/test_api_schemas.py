"""The shipped AsyncAPI document and JSON Schemas: well-formed, complete, and matching real payloads."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from device.config import Config
from device.runtime_config import RuntimeConfig
from device.transport.commands import CommandPlane
from device.transport.envelope import envelope
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
    assert {Path(r).name for r in refs} | {"envelope.json"} == {p.name for p in SCHEMAS.glob("*.json")}


def test_real_payloads_validate_and_broken_ones_do_not(tmp_path: Path) -> None:
    plane = CommandPlane("x/cmd/res", 1024)
    plane.register("status", lambda a: {"state": "online"})
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
    assert errors({"schema": 1, "config": {}}, "config-desired.json")  # unsigned
    signed = json.loads(key.request("restart", {"reason": "x"}))
    assert errors(signed, "command-request.json") == []
    assert errors({**signed, "nonce": "short"}, "command-request.json")
    assert errors({"args": {}, "reply_to": "a/b", "correlation_id": "c"}, "command-request.json") == []
    assert errors({"args": 3}, "command-request.json")
