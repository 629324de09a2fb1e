"""The JSON Schemas in device/api/schemas that are generated from the typed formats, never written by hand.

`python -m device.wire.schemas` rewrites them; tests/test_api_schemas.py fails while a committed file
differs from what the models give (gate-decision.json among them). The other schema files (status, health, prompt, ...) describe
payloads built elsewhere and are checked against live traffic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from device.wire.access import EVENT_ACCESS_PARTS
from device.wire.command import CommandReply, CommandRequest
from device.wire.desired import ConfigDesired
from device.wire.gate import GateDecision
from device.wire.manifests import ModelManifest, ReplayManifest
from device.wire.payloads import EVENT_FACE_PARTS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "api" / "schemas"
SCHEMA_BASE = "https://faceonly.example/schemas/v1/"
SIGNED_FIELDS = ["terminal", "issued_at", "expires_at", "nonce"]


def _generated(name: str, source: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}{name}",
        "$comment": f"GENERATED from {source} by `python -m device.wire.schemas`",
        **schema,
        **extra,
    }


def _model(
    model: type[BaseModel], mode: Literal["validation", "serialization"] = "validation"
) -> dict[str, Any]:
    """What a reader may send (validation: defaults optional) or what the terminal writes (serialization)."""
    return model.model_json_schema(mode=mode, by_alias=True)


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document."""
    docs = {
        f"{name}.json": _generated(
            f"{name}.json", f"device/wire/payloads.py ({model.__name__})", _model(model, "serialization")
        )
        for name, model in EVENT_FACE_PARTS.items()
    }
    docs.update(
        {
            f"{name}.json": _generated(
                f"{name}.json", f"device/wire/access.py ({model.__name__})", _model(model, "serialization")
            )
            for name, model in EVENT_ACCESS_PARTS.items()
        }
    )
    # A signature is worthless without what it signs: it brings the other signed fields with it.
    signed = {"dependentRequired": {"signature": SIGNED_FIELDS}}
    docs["command-request.json"] = _generated(
        "command-request.json", "device/wire/command.py (CommandRequest)", _model(CommandRequest), **signed
    )
    docs["command-reply.json"] = _generated(
        "command-reply.json",
        "device/wire/command.py (CommandReply)",
        TypeAdapter(CommandReply).json_schema(mode="validation", by_alias=True),
        title="Command reply: exactly one per request, ok with a result or not ok with an error",
    )
    docs["config-desired.json"] = _generated(
        "config-desired.json", "device/wire/desired.py (ConfigDesired)", _model(ConfigDesired), **signed
    )
    docs["gate-decision.json"] = _generated(
        "gate-decision.json", "device/wire/gate.py (GateDecision)", _model(GateDecision)
    )
    docs["replay-manifest.json"] = _generated(
        "replay-manifest.json", "device/wire/manifests.py (ReplayManifest)", _model(ReplayManifest)
    )
    docs["model-manifest.json"] = _generated(
        "model-manifest.json", "device/wire/manifests.py (ModelManifest)", _model(ModelManifest)
    )
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for filename, doc in schema_documents().items():
        (SCHEMA_DIR / filename).write_text(render(doc), encoding="utf-8")
        print(f"wrote {SCHEMA_DIR / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
