"""The one place models are opened: every file is checked against models/manifest.json first.

A model is read into memory once, hashed, and handed to the interpreter from those same bytes, so
the file that was verified is the file that runs (no window for a swap between check and load).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.infra.paths import models_dir
from device.wire.base import validate
from device.wire.manifests import ModelManifest

MANIFEST_NAME = "manifest.json"


class ModelError(Exception):
    """A model file or the manifest is missing, truncated, altered or malformed."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    sha256: str
    size_bytes: int
    kind: str  # "tflite" or "data"
    info: dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    name: str
    file: str
    ok: bool
    problem: str = ""


class ModelStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else models_dir()
        self.entries = self._read_manifest()

    def _read_manifest(self) -> dict[str, ModelEntry]:
        path = self.root / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"model manifest not found: {path}") from exc
        except (OSError, ValueError) as exc:
            raise ModelError(f"model manifest unreadable: {path}: {exc}") from exc
        manifest, problems = validate(ModelManifest, raw)
        if manifest is None:
            raise ModelError(f"model manifest {path} is malformed: {'; '.join(problems[:3])}")
        entries = {
            name: ModelEntry(name, item.file, item.sha256, item.size_bytes, item.kind, raw["models"][name])
            for name, item in manifest.models.items()
        }
        return entries

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError as exc:
            raise ModelError(f"model {name!r} is not in {self.root / MANIFEST_NAME}") from exc

    def read_verified(self, name: str) -> bytes:
        """The file's bytes, only if they match the manifest's size and sha256."""
        entry = self.entry(name)
        path = self.root / entry.file
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelError(f"model file missing: {path}") from exc
        except OSError as exc:
            raise ModelError(f"model file unreadable: {path}: {exc}") from exc
        if len(data) != entry.size_bytes:
            raise ModelError(
                f"model file {path} is {len(data)} bytes, manifest says {entry.size_bytes} (truncated or replaced)"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise ModelError(f"model file {path} sha256 {digest} does not match manifest {entry.sha256}")
        return data

    def verify(self) -> list[VerifyResult]:
        results = []
        for name, entry in self.entries.items():
            try:
                self.read_verified(name)
            except ModelError as exc:
                results.append(VerifyResult(name, entry.file, False, str(exc)))
            else:
                results.append(VerifyResult(name, entry.file, True))
        return results

    def interpreter(self, name: str, num_threads: int = 1) -> Any:
        """A ready (tensors allocated) LiteRT interpreter for a verified model."""
        entry = self.entry(name)
        if entry.kind != "tflite":
            raise ModelError(f"{name!r} is {entry.kind!r}, not a tflite model")
        content = self.read_verified(name)
        interpreter_cls = _interpreter_class()
        try:
            interp = interpreter_cls(model_content=content, num_threads=num_threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"model {entry.file} could not be loaded by LiteRT: {exc}") from exc
        return interp

    def array(self, name: str) -> dict[str, Any]:
        """A verified .npz data file (for example the embedder's fitted scoring statistics)."""
        import io

        import numpy as np

        data = self.read_verified(name)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (ValueError, OSError) as exc:
            raise ModelError(f"data file {self.entry(name).file} is not a valid .npz: {exc}") from exc


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError("neither ai-edge-litert nor tflite-runtime is installed") from exc
    return Interpreter
