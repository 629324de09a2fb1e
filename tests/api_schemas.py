"""Validate payloads against the shipped JSON Schemas (device/api/schemas), by payload `type`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "device" / "api" / "schemas"
BY_TYPE = {
    "status": "status.json",
    "health": "health.json",
    "event.face": "event-face.json",
    "event.access": "event-access.json",
    "prompt": "prompt.json",
    "gate.decision": "gate-decision.json",
    "command.reply": "command-reply.json",
    "config.reported": "config-reported.json",
    "doctor.probe": "doctor-probe.json",
}


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resource = Resource.from_contents(schema)
        resources += [(schema["$id"], resource), (path.name, resource)]
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return Draft202012Validator(schema, registry=REGISTRY)


def errors(payload: Any, name: str | None = None) -> list[str]:
    """Schema violations of one published payload (chosen by its `type` unless `name` is given)."""
    if name is None:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind not in BY_TYPE:
            return [f"no schema for payload type {kind!r}"]
        name = BY_TYPE[kind]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(payload)
    ]
