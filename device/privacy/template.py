"""Renewable templates: a keyed random orthogonal transform of the embedding.

The key (32 random bytes) seeds a Gaussian matrix through SHAKE-256 (portable: no dependence on
NumPy's generator streams); its QR decomposition, with signs fixed so that R has a positive
diagonal, gives a Haar-random orthogonal matrix Q. A template is Q @ embedding.

What it protects:
- Scores are preserved: <Q a, Q b> = <a, b>, so matching under one key is exactly as accurate as on
  raw embeddings (float32 rounding aside).
- Revocation and unlinkability: templates made under key A and under key B look like different
  people to each other (their cosine is that of unrelated random vectors), so rotating the key
  revokes every template issued under the old one, and two systems using different keys cannot
  link their templates of the same person.

What it does NOT protect against:
- It is not encryption. Anyone holding the key and a template recovers the raw embedding
  (Q is orthogonal: embedding = Q.T @ template), and two templates under the same key can be
  compared by anyone: a leaked template database is still matchable against itself.
- It does not hide the template from whoever receives it; use sealing for confidentiality on the way.
- An attacker with the key can also turn a raw embedding (e.g. from a photo) into a valid template.
Keep the key with the same care as the backend's private key; rotate it when either may have leaked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from device.privacy.keyfile import load_or_create_secret

KEY_BYTES = 32
_DOMAIN = b"faceonly/template/v1"


def template_key_id(key: bytes) -> str:
    """A public name for a key (keyed BLAKE2b: reveals nothing about the key), 16 hex digits."""
    return hashlib.blake2b(b"key-id", key=key, digest_size=8, person=b"fo-tpl-keyid").hexdigest()


def _gaussian(key: bytes, dim: int) -> np.ndarray:
    n = dim * dim
    pairs = (n + 1) // 2
    stream = hashlib.shake_256(_DOMAIN + dim.to_bytes(4, "big") + key).digest(pairs * 16)
    words = np.frombuffer(stream, dtype="<u8").reshape(2, pairs)
    # 53-bit uniforms in (0, 1): never 0, so the logarithm below is finite.
    u1, u2 = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(u1))
    normals = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
    return normals[:n].reshape(dim, dim)


def orthogonal_matrix(key: bytes, dim: int) -> np.ndarray:
    """The key's deterministic (dim, dim) float64 orthogonal matrix."""
    q, r = np.linalg.qr(_gaussian(key, dim))
    return q * np.sign(np.diag(r))


class TemplateTransform:
    """`apply(embedding)` -> template under this key; matrices are built once per dimension."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"template key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = bytes(key)
        self.key_id = template_key_id(self._key)
        self._matrices: dict[int, np.ndarray] = {}

    def prepare(self, dim: int) -> None:
        """Build the matrix for `dim` now (a QR of dim x dim takes ~1 s on a Pi), not at the first face."""
        self._matrix(dim)

    def _matrix(self, dim: int) -> np.ndarray:
        if dim not in self._matrices:
            self._matrices[dim] = orthogonal_matrix(self._key, dim)
        return self._matrices[dim]

    def apply(self, embedding: np.ndarray) -> np.ndarray:
        x = np.asarray(embedding, np.float64).reshape(-1)
        return (self._matrix(x.size) @ x).astype(np.float32)

    def invert(self, template: np.ndarray) -> np.ndarray:
        """The raw embedding back from a template: what any holder of the key can do (see module doc)."""
        y = np.asarray(template, np.float64).reshape(-1)
        return (self._matrix(y.size).T @ y).astype(np.float32)


def load_transform(path: Path) -> tuple[TemplateTransform, bool]:
    """(transform, created): the key from `path`, generated there (0600) on first start."""
    key, created = load_or_create_secret(path, KEY_BYTES)
    return TemplateTransform(key), created
