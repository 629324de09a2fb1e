"""Pushing a door policy to a terminal: access.sync with its signed manifest, then each chunk the terminal
misses, sealed to that terminal (device.privacy.terminalseal) with its Merkle proof, over the gallery push's
command requester; an interrupted push resumes when run again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from device.identity.operator import UpdateFile
from device.identity.push import PushError, Requester
from device.identity.transfer import chunk_proofs
from device.privacy.terminalseal import seal_for_terminal


def push(
    requester: Requester,
    update: UpdateFile,
    terminal_key: bytes,
    progress: Callable[[str], None] = lambda m: None,
) -> dict:
    """The terminal's access summary once the policy is in force; PushError on a refusal."""

    def ok(reply: dict[str, Any], what: str) -> dict[str, Any]:
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise PushError(f"{what} refused: {err.get('code')}: {err.get('message')}")
        return reply["result"]

    started = ok(requester.request("access.sync", {"manifest": update.manifest}), "access.sync")
    transfer, missing = started["transfer"], list(started["missing"])
    size = update.manifest["body"]["chunk_size"]
    proofs = chunk_proofs(update.manifest, update.body)
    progress(f"transfer {transfer}: {len(missing)} of {started['chunks']} chunks to send")
    result: dict[str, Any] = {}
    for index in missing:
        data = seal_for_terminal(terminal_key, update.body[index * size : (index + 1) * size])
        args = {"transfer": transfer, "index": index, "data": data, "proof": proofs[index]}
        result = ok(requester.request("access.chunk", args), f"chunk {index}")
    if result.get("missing_count", 0):
        raise PushError(f"the terminal still misses {result['missing_count']} chunks; run the push again")
    return result.get("access", {})
