"""docs/mqtt-api.md's channel reference is generated from the AsyncAPI document (scripts/mqtt_api_doc.py): it
is up to date, names every channel, and a changed document makes the check fail."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("mqtt_api_doc", ROOT / "scripts" / "mqtt_api_doc.py")
assert SPEC is not None and SPEC.loader is not None
doc_tool = importlib.util.module_from_spec(SPEC)
sys.modules["mqtt_api_doc"] = doc_tool
SPEC.loader.exec_module(doc_tool)


def _api() -> dict:
    return yaml.safe_load(doc_tool.API.read_text(encoding="utf-8"))


def test_the_generated_part_is_up_to_date() -> None:
    assert doc_tool.main(["--check"]) == 0, "run: python scripts/mqtt_api_doc.py"


def test_every_channel_is_in_the_doc_with_its_payload_schema() -> None:
    text = doc_tool.DOC.read_text(encoding="utf-8")
    api = _api()
    for channel, item in api["channels"].items():
        assert f"`{channel.removeprefix(doc_tool.TERMINAL_PREFIX)}`" in text, channel
        operation = item.get("subscribe") or item["publish"]
        payload = doc_tool._message(api, operation["message"])["payload"]["$ref"]
        assert f"(../device/api/{payload})" in text, payload
        assert (ROOT / "device" / "api" / payload).is_file(), payload


def test_a_changed_document_is_caught() -> None:
    api = _api()
    changed = copy.deepcopy(api)
    first = next(iter(changed["channels"].values()))
    operation = first.get("subscribe") or first["publish"]
    operation["summary"] = "something else entirely"
    text = doc_tool.DOC.read_text(encoding="utf-8")
    assert doc_tool.updated(text, doc_tool.render(api)) == text
    assert doc_tool.updated(text, doc_tool.render(changed)) != text
