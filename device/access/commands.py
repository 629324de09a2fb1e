"""The door policy's commands (signed on the control plane; the policy itself signed by the backend's key):

- access.sync {manifest} / access.chunk {transfer, index, data}: a policy by the gallery's chunked transfer
  (resumable; each chunk checked against the signed manifest on arrival);
- access.update {manifest, body}: a small policy in one message (body base64);
- access.status: the policy in force, this door's mode, counts (never a credential).

A refused policy leaves the one in force as it was and says why (`refused`, details.reason).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from device.access import document as doc
from device.identity.transfer import MAX_CHUNK_BYTES, TransferError
from device.transport.commands import BAD_REQUEST, CommandError, parse_args

if TYPE_CHECKING:
    from device.access.component import AccessComponent

REFUSED: Final = "refused"
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Sync(_Strict):
    manifest: dict[str, Any]


class _Chunk(_Strict):
    transfer: str = Field(max_length=64)
    index: int = Field(ge=0, le=1_000_000)
    data: str = Field(max_length=MAX_CHUNK_BYTES * 4 // 3 + 8)


class _Update(_Strict):
    manifest: dict[str, Any]
    body: str


def _refusing(component: AccessComponent, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except doc.PolicyRefused as exc:
        raise CommandError(REFUSED, str(exc), {"reason": exc.reason, "access": component.summary()}) from None
    except TransferError as exc:
        raise CommandError(BAD_REQUEST, str(exc)) from None


def access_handlers(component: AccessComponent) -> dict[str, Handler]:
    def sync(args: dict[str, Any]) -> dict[str, Any]:
        def begin() -> dict[str, Any]:
            checked = doc.check_manifest(parse_args(_Sync, args).manifest, component.policy_key)
            doc.check_newer(checked, component.version)
            missing = component.incoming.begin(checked)
            return {
                "transfer": component.incoming.id,
                "missing": missing,
                "chunks": len(checked["body"]["chunks"]),
            }

        return _refusing(component, begin)

    def chunk(args: dict[str, Any]) -> dict[str, Any]:
        req = parse_args(_Chunk, args)

        def put() -> dict[str, Any]:
            try:
                data = base64.b64decode(req.data, validate=True)
            except ValueError:
                raise TransferError("chunk data must be base64") from None
            missing = component.incoming.put(req.transfer, req.index, data)
            if missing:
                return {"transfer": req.transfer, "missing": missing[:100], "missing_count": len(missing)}
            manifest, body = component.incoming.manifest, component.incoming.body()
            try:
                summary = component.apply_update(manifest, body)
            finally:
                component.incoming.discard()
            return {"transfer": req.transfer, "missing": [], "missing_count": 0, "access": summary}

        return _refusing(component, put)

    def update(args: dict[str, Any]) -> dict[str, Any]:
        req = parse_args(_Update, args)
        try:
            body = base64.b64decode(req.body, validate=True)
        except ValueError:
            raise CommandError(BAD_REQUEST, "body must be base64") from None
        return _refusing(component, lambda: {"access": component.apply_update(req.manifest, body)})

    return {
        "access.sync": sync,
        "access.chunk": chunk,
        "access.update": update,
        "access.status": lambda args: component.status(),
    }
