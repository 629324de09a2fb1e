"""The gallery at rest: encrypted with the terminal's own key (PyNaCl SecretBox), written atomically, 0600.

The file holds the signed manifest, the subjects' canonical body and the hashes of subjects purged on the
terminal; loading decrypts, then verifies the signature and the gallery digest again (device.identity.gallery.load_verified), so a file altered on disk,
or a key that is not the terminal's, is refused and reported, never half-loaded.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from device.contracts import ModelRef
from device.identity.gallery import Gallery, GalleryRefused, encode_body, load_verified
from device.infra.atomicfile import write_atomic
from device.privacy.keyfile import load_or_create_secret

_LEN = struct.Struct("<I")


def open_box(key_path: Path) -> SecretBox:
    """The terminal's gallery key (created on first use, 0600, never silently replaced)."""
    secret, _ = load_or_create_secret(key_path, SecretBox.KEY_SIZE)
    return SecretBox(secret)


class GalleryStore:
    def __init__(self, path: Path, box: SecretBox) -> None:
        self.path, self._box = Path(path), box

    def save(self, manifest: dict, gallery: Gallery, body: bytes | bytearray | None = None) -> None:
        """`body`: the gallery's body when the caller holds it already (a verified snapshot's), so a large
        gallery is not encoded again; it is verified again at every load all the same."""
        state = {"manifest": manifest, "purged": [list(p) for p in gallery.purged]}
        head = json.dumps(state, separators=(",", ":")).encode()
        if body is None:
            body = encode_body(list(gallery.subjects))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, bytes(self._box.encrypt(_LEN.pack(len(head)) + head + body)))

    def load(self, gallery_key: bytes, embedder: ModelRef) -> tuple[Gallery, dict] | None:
        """(gallery, its manifest), None when there is none yet; GalleryRefused when it cannot be trusted."""
        if not self.path.exists():
            return None
        try:
            plain = self._box.decrypt(self.path.read_bytes())
        except CryptoError:
            raise GalleryRefused(
                "damaged", f"{self.path} does not decrypt with this terminal's key"
            ) from None
        (n,) = _LEN.unpack_from(plain)
        try:
            state = json.loads(plain[4 : 4 + n])
            manifest, purged = state["manifest"], list(state["purged"])
        except (ValueError, KeyError, TypeError):
            raise GalleryRefused("damaged", f"{self.path}: the stored manifest is not valid") from None
        return load_verified(manifest, plain[4 + n :], purged, gallery_key, embedder), manifest

    def erase(self) -> None:
        self.path.unlink(missing_ok=True)
