"""Builds the identity component for the service from its config, models and outputs (one place, so the
service only calls it): the gallery key from the config file, the gate (shared with the door policy's
component), the prompt channel, the outbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from device.config import Config
from device.contracts import ModelRef, Prompt, Protector
from device.identity.component import IdentityComponent, build_identity
from device.identity.gate import Gate
from device.infra.modelstore import ModelStore
from device.transport.commands import CommandError, Reply
from device.wire.bounded import PayloadError, loads_bounded


def names_subject(payload: bytes, subject: str) -> bool:
    """Does this queued event's match name `subject`?"""
    try:
        event = loads_bounded(payload, len(payload))
    except PayloadError:
        return False
    match = event.get("match") if isinstance(event, dict) else None
    return isinstance(match, dict) and match.get("subject") == subject


def build_component(
    cfg: Config,
    store: ModelStore,
    *,
    prompt: Callable[[Prompt], None],
    gate: Gate,
    publish_reply: Callable[[Reply], None],
    protector: Protector,
    purge_where: Callable[[Callable[[bytes], bool]], int],
) -> IdentityComponent | None:
    """None when no gallery key is configured (no 1:N, events as before)."""
    entry = store.entry("embedder")
    identity = build_identity(cfg, ModelRef("embedder", entry.file, entry.sha256), entry.info)
    if identity is None:
        return None

    def enrol_reply(handle: Any, outcome: dict[str, Any] | CommandError) -> None:
        from device.transport.commands import completed

        if handle is not None:
            publish_reply(completed(handle, outcome))

    return IdentityComponent(
        identity,
        gate,
        prompt,
        enrol_reply,
        protector,
        lambda subject: purge_where(lambda payload: names_subject(payload, subject)),
    )
