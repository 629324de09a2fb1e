"""Validate MQTT traffic against the AsyncAPI document itself: the topic picks the channel, the
channel's message names its payload schema, and that schema is resolved from the document's own
`$ref`s (relative files, then their `$ref`s in turn). No table of payload types stands in between."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

API = Path(__file__).resolve().parent.parent / "device" / "api" / "asyncapi.yaml"


@dataclass(frozen=True)
class Channel:
    name: str
    pattern: re.Pattern[str]
    validator: Draft202012Validator


def _retrieve(base: Path):
    def retrieve(uri: str) -> Resource:
        # `$ref: "envelope.json"` resolves against the referring schema's $id; the file sits next to it.
        name = uri.rsplit("/", 1)[-1]
        return Resource.from_contents(json.loads((base / name).read_text(encoding="utf-8")))

    return retrieve


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def channels(api: Path = API, operation: str = "subscribe") -> list[Channel]:
    """Channels where the terminal publishes (`subscribe` in AsyncAPI 2: what a client receives)."""
    doc = yaml.safe_load(api.read_text(encoding="utf-8"))
    out = []
    for name, channel in doc["channels"].items():
        if operation not in channel:
            continue
        message = channel[operation]["message"]
        if "$ref" in message:
            message = _resolve(doc, message["$ref"])
        schema_file = api.parent / message["payload"]["$ref"]
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        regex = "^" + re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", re.escape(name)) + "$"
        registry = Registry(retrieve=_retrieve(schema_file.parent))
        out.append(Channel(name, re.compile(regex), Draft202012Validator(schema, registry=registry)))
    return out


def violations(topic: str, payload: Any, chans: list[Channel]) -> list[str]:
    """What is wrong with one message by the document: no channel for its topic, or schema errors."""
    matching = [c for c in chans if c.pattern.match(topic)]
    if len(matching) != 1:
        return [f"{topic}: {len(matching)} AsyncAPI channels match (want exactly 1)"]
    return [
        f"{topic} ({matching[0].name}) {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in matching[0].validator.iter_errors(payload)
    ]
