"""The channel reference of docs/mqtt-api.md, generated from the AsyncAPI document (device/api/asyncapi.yaml),
so the document the tests check against real traffic and the page people read cannot drift apart.

    python scripts/mqtt_api_doc.py           # rewrite the generated part of docs/mqtt-api.md
    python scripts/mqtt_api_doc.py --check   # exit 1 when it is out of date (the tests run this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "device" / "api" / "asyncapi.yaml"
DOC = ROOT / "docs" / "mqtt-api.md"
BEGIN = "<!-- generated from device/api/asyncapi.yaml by scripts/mqtt_api_doc.py: do not edit -->"
END = "<!-- end of generated part -->"
TERMINAL_PREFIX = "faceonly/v1/dev/{terminalId}/"


def _message(doc: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    name = ref["$ref"].rsplit("/", 1)[-1]
    return dict(doc["components"]["messages"][name])


def _binding(operation: dict[str, Any]) -> str:
    mqtt = (operation.get("bindings") or {}).get("mqtt") or {}
    parts = []
    if "qos" in mqtt:
        parts.append(f"QoS {mqtt['qos']}")
    if mqtt.get("retain"):
        parts.append("retained")
    return ", ".join(parts)


def render(doc: dict[str, Any]) -> str:
    """The generated part: one entry per channel, in the document's order."""
    info = doc["info"]
    out = [
        BEGIN,
        "",
        f"### Channels ({info['title']} {info['version']}, AsyncAPI {doc['asyncapi']})",
        "",
    ]
    for channel, item in doc["channels"].items():
        kind = "subscribe" if "subscribe" in item else "publish"
        operation = item[kind]
        topic = channel.removeprefix(TERMINAL_PREFIX)
        direction = "terminal → subscribers" if kind == "subscribe" else "→ terminal"
        if not channel.startswith(TERMINAL_PREFIX):
            direction = "terminal → the requester's reply topic"
        message = _message(doc, operation["message"])
        payload = message.get("payload", {}).get("$ref", "")
        details = [direction]
        binding = _binding(operation)
        if binding:
            details.append(binding)
        if payload:
            details.append(f"payload [{Path(payload).name}](../device/api/{payload})")
        out += [
            f"#### `{topic}`",
            "",
            f"*{'; '.join(details)}*",
            "",
            " ".join(operation["summary"].split()),
            "",
        ]
    out.append(END)
    return "\n".join(out)


def updated(text: str, generated: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOC.relative_to(ROOT)} has no generated part (the {BEGIN!r} and {END!r} lines)")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + generated + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/mqtt-api.md is out of date")
    args = parser.parse_args(argv)
    generated = render(yaml.safe_load(API.read_text(encoding="utf-8")))
    text = DOC.read_text(encoding="utf-8")
    new = updated(text, generated)
    if args.check:
        if new != text:
            print(
                f"{DOC.relative_to(ROOT)} is out of date: run python scripts/mqtt_api_doc.py", file=sys.stderr
            )
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
