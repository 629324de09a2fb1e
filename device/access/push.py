"""Pushing a door policy to a terminal: access.sync with its signed manifest, then each chunk the terminal
says it misses (an interrupted push resumes when run again), over the gallery push's command requester."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from device.identity.operator import UpdateFile
from device.identity.push import PushError, Requester


def push(requester: Requester, update: UpdateFile, progress: Callable[[str], None] = lambda m: None) -> dict:
    """The terminal's access summary once the policy is in force; PushError on a refusal."""

    def ok(reply: dict[str, Any], what: str) -> dict[str, Any]:
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise PushError(f"{what} refused: {err.get('code')}: {err.get('message')}")
        return reply["result"]

    started = ok(requester.request("access.sync", {"manifest": update.manifest}), "access.sync")
    transfer, missing = started["transfer"], list(started["missing"])
    size = update.manifest["body"]["chunk_size"]
    progress(f"transfer {transfer}: {len(missing)} of {started['chunks']} chunks to send")
    result: dict[str, Any] = {}
    for index in missing:
        data = base64.b64encode(update.body[index * size : (index + 1) * size]).decode()
        args = {"transfer": transfer, "index": index, "data": data}
        result = ok(requester.request("access.chunk", args), f"chunk {index}")
    if result.get("missing_count", 0):
        raise PushError(f"the terminal still misses {result['missing_count']} chunks; run the push again")
    return result.get("access", {})
