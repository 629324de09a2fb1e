"""Personal text in a payload: where a display name from the gallery appears in a message, in the clear or
inside a base64 blob. Pure; the audit (device/privacy/audit.py) turns what it finds into a verdict.

Names are compared case-insensitively after Unicode normalisation (NFKC, casefold), against every string in
the JSON document (values and keys, and the bytes of base64 blobs) or the raw payload when it is not JSON.
Findings name the JSON path and the name's position in the list, never the name itself.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from device.privacy.imagescan import decode_base64

MIN_NAME_CHARS = 3  # shorter "names" would match ordinary words and codes


def normalised(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def usable_names(names: Sequence[str]) -> tuple[str, ...]:
    """The names worth searching for, normalised, without duplicates, in the order given (findings say
    "name #n" by this order)."""
    return tuple(dict.fromkeys(normalised(n.strip()) for n in names if len(n.strip()) >= MIN_NAME_CHARS))


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key)
            yield from _strings(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node
        blob = decode_base64(node)
        if blob is not None:
            yield f"{path}+base64", blob.decode("utf-8", errors="ignore")


def _hits(where: str, text: str, names: tuple[str, ...], index: dict[str, int]) -> list[str]:
    folded = normalised(text)
    return [f"{where}: name #{index[n]}" for n in names if n in folded]


def personal_text(document: Any, payload: bytes, names: tuple[str, ...]) -> list[str]:
    """Where each of `names` (from usable_names) appears; `document` is the parsed JSON or None."""
    if not names:
        return []
    index = {n: i + 1 for i, n in enumerate(names)}
    if document is None:
        return _hits("payload", payload.decode("utf-8", errors="ignore"), names, index)
    found: list[str] = []
    for where, text in _strings(document, ""):
        found += _hits(where or "(root)", text, names, index)
    return found


# What a prompt on MQTT may hold: the envelope and codes, numbers, a subject id (device/runtime/prompts.py).
ENVELOPE_KEYS = frozenset(
    {"schema", "id", "type", "terminal_id", "created_at", "expires_at", "correlation_id"}
)
PROMPT_KEYS = frozenset(
    {"track_id", "state", "code", "step", "step_index", "steps", "deadline_s", "params", "t"}
)


def prompt_free_text(document: Any) -> list[str]:
    """Where a prompt message holds something that is not a code or a number (a `text` field, a parameter
    with spaces in it): where words can leak."""
    if not isinstance(document, dict) or document.get("type") != "prompt":
        return []
    found = [str(k) for k in document if k not in ENVELOPE_KEYS | PROMPT_KEYS and k != "signature"]
    params = document.get("params")
    if isinstance(params, dict):
        found += [
            f"params.{k}" for k, v in params.items() if not isinstance(v, int | float) and not _code_like(v)
        ]
    elif params is not None:
        found.append("params")
    return sorted(found)


def _code_like(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 128 and not any(c.isspace() for c in value)
