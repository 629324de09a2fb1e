"""The simulated fleet's terminals: ids and Ed25519 event keys, derived from one fleet seed.

Ten thousand key files would be ten thousand files to keep in step; instead every simulated terminal's signing
key is derived from the fleet's seed file and its id (SHA-256 of both), so `faceonly fleet-sim keys` writes the
public keys the backend pins, and the simulator's processes make the same keys again by themselves. A seed is
a secret like any key file (0600); these are simulation keys, never a real terminal's.
"""

from __future__ import annotations

import base64
import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

from nacl.signing import SigningKey

from device.privacy.keyfile import load_or_create_secret
from device.privacy.signing import Signer
from device.transport.topics import check_terminal_id

SEED_BYTES = 32


def terminal_ids(count: int, prefix: str = "sim", start: int = 0) -> list[str]:
    """`prefix-00000`, `prefix-00001`, ...: valid terminal ids on every broker (checked)."""
    width = max(5, len(str(start + count - 1)))
    return [check_terminal_id(f"{prefix}-{i:0{width}d}") for i in range(start, start + count)]


def read_seed(path: Path) -> bytes:
    """The fleet seed in `path`, made (0600) on first use."""
    seed, _ = load_or_create_secret(path, SEED_BYTES)
    return seed


def signer_for(seed: bytes, terminal_id: str) -> Signer:
    return Signer(SigningKey(hashlib.sha256(seed + b"\0" + terminal_id.encode("utf-8")).digest()))


def public_keys(seed: bytes, ids: list[str]) -> Iterator[tuple[str, str]]:
    for tid in ids:
        yield tid, base64.b64encode(signer_for(seed, tid).public_key).decode("ascii")


def write_key_csv(path: Path, rows: Iterator[tuple[str, str]]) -> int:
    """`terminal_id,public_key` lines (what `faceonly backend terminals add --from-csv` reads); the count."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["terminal_id", "public_key"])
        for row in rows:
            out.writerow(row)
            count += 1
    return count
