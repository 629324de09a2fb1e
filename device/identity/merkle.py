"""The Merkle tree a gallery update's chunks hang from (RFC 9162 section 2.1, SHA-256).

The signed manifest names only the tree's root and the number of chunks, so it stays a few hundred bytes
whatever the gallery's size; each chunk travels with its inclusion proof (about log2(chunks) sibling
hashes) and is checked on arrival, on its own, in any order: a transfer stays verifiable chunk by chunk
and resumable, and no list of chunk hashes has to fit in one command.

Leaf hash = SHA-256(0x00 || chunk), node hash = SHA-256(0x01 || left || right); a tree of n leaves splits
at the largest power of two below n (RFC 9162's MTH). Built bottom-up, a level's odd last node moves up
unchanged, which gives the same tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_BYTES = 32
# An inclusion proof has one hash per level: 64 levels cover any number of chunks a size field can give.
MAX_PROOF = 64


def leaf_hash(chunk: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + chunk).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        up = [_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            up.append(below[-1])
        levels.append(up)
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head over leaf hashes (leaf_hash of each chunk)."""
    return _levels(leaves)[-1][0]


def proofs(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The inclusion proof (audit path, leaf to root) of every leaf."""
    levels = _levels(leaves)
    out: list[list[bytes]] = []
    for index in range(len(leaves)):
        path, i = [], index
        for level in levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i //= 2
        out.append(path)
    return out


def verify(index: int, size: int, leaf: bytes, proof: Sequence[bytes], head: bytes) -> bool:
    """Whether `leaf` is leaf `index` of the `size`-leaf tree with root `head` (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size or len(proof) > MAX_PROOF:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_BYTES or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == head
