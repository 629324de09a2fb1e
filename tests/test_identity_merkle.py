"""The Merkle tree of gallery chunks against RFC 9162's own recursive definition: every leaf's proof holds,
and a proof never vouches for another leaf, another position or altered bytes. (The tree size comes from the
signed manifest, as the root does.)"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from device.identity import merkle


def rfc9162_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) as RFC 9162 section 2.1.1 writes it: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc9162_root(leaves[:k]) + rfc9162_root(leaves[k:])).digest()


def test_known_small_trees() -> None:
    a, b, c = (merkle.leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle.root([a]) == a == hashlib.sha256(b"\x00a").digest()
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.root([a, b, c]) == hashlib.sha256(b"\x01" + ab + c).digest()
    assert merkle.proofs([a, b, c]) == [[b, c], [a, c], [ab]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_every_proof_holds_and_vouches_for_nothing_else(chunks: list[bytes], data) -> None:
    leaves = [merkle.leaf_hash(c) for c in chunks]
    head = merkle.root(leaves)
    assert head == rfc9162_root(leaves)
    proofs = merkle.proofs(leaves)
    n = len(leaves)
    for i in range(n):
        assert merkle.verify(i, n, leaves[i], proofs[i], head)
    i = data.draw(st.integers(0, n - 1))
    leaf, proof = leaves[i], proofs[i]
    assert not merkle.verify(i, n, merkle.leaf_hash(chunks[i] + b"x"), proof, head)
    other = data.draw(st.integers(0, n - 1))
    if leaves[other] != leaf:
        assert not merkle.verify(other, n, leaf, proof, head)
    if proof:
        flipped = bytes([proof[0][0] ^ 1]) + proof[0][1:]
        assert not merkle.verify(i, n, leaf, [flipped, *proof[1:]], head)
        assert not merkle.verify(i, n, leaf, proof[:-1], head)
    assert not merkle.verify(i, n, leaf, [*proof, head], head)
    assert not merkle.verify(-1, n, leaf, proof, head) and not merkle.verify(n, n, leaf, proof, head)
