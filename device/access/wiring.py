"""Builds the door policy's component for the service from its config (one place, so the service only calls
it): the policy key and the credential key from the terminal's own files, the shared gate and prompt channel,
and the terminal's opener for what the backend seals to it (device.privacy.terminalseal)."""

from __future__ import annotations

from collections.abc import Callable

from device.access.component import AccessComponent
from device.access.credentials import load_key
from device.config import Config
from device.contracts import Prompt
from device.identity.gate import Gate
from device.identity.operator import read_public_key
from device.identity.runtime import Identity


def build_access(
    cfg: Config,
    identity: Identity | None,
    gate: Gate,
    prompt: Callable[[Prompt], None],
    unseal: Callable[[str], bytes],
) -> AccessComponent | None:
    """None when [access] is off. ValueError / KeyFileError / OSError on a key or device it cannot use."""
    acfg = cfg.access
    if not acfg.enabled:
        return None
    key_file = acfg.policy_public_key_file or cfg.identity.gallery_public_key_file
    assert key_file is not None  # the config refuses access.enabled without one
    credential_key = load_key(acfg.credential_key_file) if acfg.credential_key_file is not None else None
    return AccessComponent(cfg, read_public_key(key_file), credential_key, identity, gate, prompt, unseal)
