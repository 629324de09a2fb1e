"""The door policy's commands (signed on the control plane; the policy itself signed by the backend's key):

- access.sync {manifest} / access.chunk {transfer, index, data, proof}: a policy by the gallery's chunked
  transfer (device/identity/transfer.py: resumable, each chunk checked on arrival with its Merkle inclusion
  proof against the signed manifest's chunk_root); replay-safe like gallery.chunk;
- access.update {manifest, body}: a small policy in one message;
- access.status (read-only): the policy in force, this door's mode, counts (never a credential).

Chunk data and an inline body come sealed to this terminal (device/privacy/terminalseal.py): the policy
holds people's ids, keypad numbers and credential hashes, which never cross the broker readable; one in the
clear is refused (`not_sealed`). A refused policy leaves the one in force as it was and says why (`refused`,
details.reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

from nacl.bindings import crypto_box_SEALBYTES
from pydantic import BaseModel, ConfigDict, Field

from device.access import document as doc
from device.identity.merkle import MAX_PROOF
from device.identity.transfer import MAX_CHUNK_BYTES, TransferError
from device.transport.commands import BAD_REQUEST, CommandError, CommandPlane, parse_args

if TYPE_CHECKING:
    from device.access.component import AccessComponent

REFUSED: Final = "refused"
SEALED_CHUNK = (MAX_CHUNK_BYTES + crypto_box_SEALBYTES) * 4 // 3 + 8  # base64 of a sealed chunk


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Sync(_Strict):
    manifest: dict[str, Any]


class _Chunk(_Strict):
    transfer: str = Field(max_length=64)
    index: int = Field(ge=0, le=1_000_000)
    data: str = Field(max_length=SEALED_CHUNK)
    proof: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field([], max_length=MAX_PROOF)


class _Update(_Strict):
    manifest: dict[str, Any]
    body: str = Field(max_length=SEALED_CHUNK)


def _refusing(component: AccessComponent, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except doc.PolicyRefused as exc:
        raise CommandError(REFUSED, str(exc), {"reason": exc.reason, "access": component.summary()}) from None
    except TransferError as exc:
        raise CommandError(BAD_REQUEST, str(exc)) from None


def _opened(component: AccessComponent, sealed: str, what: str) -> bytes:
    try:
        return component.unseal(sealed)
    except ValueError as exc:
        raise doc.PolicyRefused("not_sealed", f"{what}: {exc}") from None


def register_commands(component: AccessComponent, plane: CommandPlane) -> None:
    def sync(args: dict[str, Any]) -> dict[str, Any]:
        manifest = parse_args(_Sync, args).manifest

        def begin() -> dict[str, Any]:
            checked = doc.check_manifest(manifest, component.policy_key)
            doc.check_newer(checked, component.version)
            missing = component.incoming.begin(checked)
            chunks = checked["body"]["chunk_count"]
            return {"transfer": component.incoming.id, "missing": missing[:1000], "chunks": chunks}

        return _refusing(component, begin)

    def chunk(args: dict[str, Any]) -> dict[str, Any]:
        req = parse_args(_Chunk, args)

        def put() -> dict[str, Any]:
            data = _opened(component, req.data, "chunk data")
            missing = component.incoming.put(req.transfer, req.index, data, req.proof)
            if missing:
                return {"transfer": req.transfer, "missing_count": missing}
            manifest, body = component.incoming.manifest, component.incoming.body()
            try:
                summary = component.apply_update(manifest, body)
            finally:
                component.incoming.discard()
            return {"transfer": req.transfer, "missing_count": 0, "access": summary}

        return _refusing(component, put)

    def update(args: dict[str, Any]) -> dict[str, Any]:
        req = parse_args(_Update, args)
        return _refusing(
            component,
            lambda: {"access": component.apply_update(req.manifest, _opened(component, req.body, "body"))},
        )

    plane.register("access.sync", sync)
    plane.register("access.chunk", chunk, replay_safe=True)
    plane.register("access.update", update)
    plane.register("access.status", lambda args: component.status(), read_only=True)
