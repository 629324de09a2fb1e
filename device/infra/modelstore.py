"""The one place models are opened: every file is checked against models/manifest.json first.

A model is read into memory once, hashed, and handed to the interpreter from those same bytes, so
the file that was verified is the file that runs (no window for a swap between check and load).

`verify()` (the `models.verify` command, which anyone on the broker may send) re-hashes a file only
when it may have changed since its last good hash: its identity and timestamps (device, inode, size,
mtime, ctime) differ, or they were too recent to rule out a change within the same timestamp tick
(git's "racily clean" rule). ctime cannot be set from user space, so a replaced or rewritten file
is always hashed again; an unchanged one costs a stat().
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.infra.paths import models_dir
from device.wire.base import validate
from device.wire.manifests import ModelManifest

MANIFEST_NAME = "manifest.json"
# File timestamps come from a coarse clock (a jiffy, or seconds on some filesystems): a stat this close
# to the last change may not see a change made in the same tick, so such a hash is not reused.
RACY_S = 2.0


class ModelError(Exception):
    """A model file or the manifest is missing, truncated, altered or malformed."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    sha256: str
    size_bytes: int
    kind: str  # "tflite", "onnx" or "data"
    info: dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    name: str
    file: str
    ok: bool
    problem: str = ""
    rehashed: bool = True  # False: unchanged since a good hash at `hashed_at`, not read again
    hashed_at: float | None = None  # unix seconds of the last good hash


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ModelStore:
    racy_s = RACY_S

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else models_dir()
        self.entries = self._read_manifest()
        # name -> (file identity when it last hashed good, when): verify() reuses it while unchanged
        self._good: dict[str, tuple[tuple[int, ...], float]] = {}

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
        data = self._verified(name, keep=True)
        assert data is not None
        return data

    def _verified(self, name: str, keep: bool) -> bytes | None:
        """Check a file against the manifest; its bytes with `keep`, else it is hashed in chunks, so that
        verifying a model the terminal does not load leaves no model-sized block in its heap."""
        entry = self.entry(name)
        path = self.root / entry.file
        self._good.pop(name, None)
        data = None
        try:
            with path.open("rb") as f:
                # Taken before the read: a change during or after it makes the next verify() hash again.
                st = os.fstat(f.fileno())
                if keep:
                    data = f.read()
                    size, digest = len(data), hashlib.sha256(data).hexdigest()
                else:
                    size, digest = st.st_size, hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError as exc:
            raise ModelError(f"model file missing: {path}") from exc
        except OSError as exc:
            raise ModelError(f"model file unreadable: {path}: {exc}") from exc
        if size != entry.size_bytes:
            raise ModelError(
                f"model file {path} is {size} bytes, manifest says {entry.size_bytes} (truncated or replaced)"
            )
        if digest != entry.sha256:
            raise ModelError(f"model file {path} sha256 {digest} does not match manifest {entry.sha256}")
        now = time.time()
        if now - max(st.st_mtime, st.st_ctime) > self.racy_s:
            self._good[name] = (_identity(st), now)
        return data

    def verify(self) -> list[VerifyResult]:
        """Every model against the manifest; a file unchanged since its last good hash is not read again."""
        results = []
        for name, entry in self.entries.items():
            reused = self._unchanged(name)
            if reused is not None:
                results.append(VerifyResult(name, entry.file, True, rehashed=False, hashed_at=reused))
                continue
            try:
                self._verified(name, keep=False)
            except ModelError as exc:
                results.append(VerifyResult(name, entry.file, False, str(exc)))
            else:
                results.append(VerifyResult(name, entry.file, True, hashed_at=time.time()))
        return results

    def _unchanged(self, name: str) -> float | None:
        """When `name` last hashed good, if its file is provably the same one since; else None."""
        good = self._good.get(name)
        if good is None:
            return None
        try:
            st = (self.root / self.entries[name].file).stat()
        except OSError:
            return None
        return good[1] if _identity(st) == good[0] else None

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

    def onnx_session(self, name: str, num_threads: int = 1) -> Any:
        """An ONNX Runtime session (CPU) for a verified model; onnxruntime is an optional package."""
        entry = self.entry(name)
        if entry.kind != "onnx":
            raise ModelError(f"{name!r} is {entry.kind!r}, not an onnx model")
        content = self.read_verified(name)
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelError(
                f"{entry.file} needs onnxruntime, which is not installed (pip install 'faceonly[onnx]')"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # its warnings go to stderr, not to the terminal's log
        try:
            return onnxruntime.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's load errors (Fail, InvalidProtobuf...) share only Exception
            raise ModelError(f"model {entry.file} could not be loaded by ONNX Runtime: {exc}") from exc

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
