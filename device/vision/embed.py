"""Face embedding with dlib's ResNet face descriptor (128-d), rebuilt from @vladmandic/face-api's weights.

The model takes a 150x150 BGR chip of 0..255 pixels (device.vision.align; the input normalisation is
folded into its first convolution), and its int8 input is exactly pixel - 128. An embedding is the sum
of the L2-normalised descriptors of the chip and of its mirror image, normalised again (flip averaging);
`similarity` is then a dot product (cosine), in -1..1, higher = more alike. No mean descriptor is
subtracted: for this model it costs about a point on LFW (../shared/MODELS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from device.contracts import Detection, ModelRef
from device.infra.inference import OnnxRunner, TfliteRunner
from device.infra.modelstore import ModelError
from device.vision.align import CHIP_SIZE, AlignedChip, align_face
from device.vision.landmarks import FaceMesh, FaceMeshModel, trusted_xy

MODEL_NAME = "embedder"
# The same network for ONNX Runtime, written from the TFLite file (faceonly_lab.modelexport): its manifest entry
# names the file it was exported from and whose outputs it was checked to reproduce (to an output step or two).
ONNX_MODEL_NAME = "embedder_onnx"
Runtime = Literal["litert", "onnxruntime"]


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def flip_average(descriptor: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """normalise(normalise(d) + normalise(d_mirror)): the embedding of one chip."""
    return l2_normalise(l2_normalise(descriptor) + l2_normalise(mirrored))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings."""
    a = np.asarray(a, np.float32).reshape(-1)
    b = np.asarray(b, np.float32).reshape(-1)
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def onnx_link_problem(store: Any) -> str | None:
    """Why the embedder's ONNX file may not stand in for the shipped embedder, or None. Only a file exported
    from the very TFLite file the manifest ships gives its outputs, and so the gallery's templates and
    thresholds."""
    try:
        onnx, tflite = store.entry(ONNX_MODEL_NAME), store.entry(MODEL_NAME)
    except ModelError as exc:
        return str(exc)
    source = onnx.info.get("same_outputs_as", {})
    if source.get("model") != MODEL_NAME or source.get("sha256") != tflite.sha256:
        return (
            f"{onnx.file} was exported from {source.get('sha256', 'an unnamed file')}, not from the shipped "
            f"embedder {tflite.sha256}: rebuild it (python scripts/build_models.py --onnx-only)"
        )
    return None


def _onnx_runner(store: Any, num_threads: int) -> OnnxRunner:
    problem = onnx_link_problem(store)
    if problem is not None:
        raise ModelError(problem)
    return OnnxRunner(store.onnx_session(ONNX_MODEL_NAME, num_threads))


class Embedder:
    """`embed_chip(chip_bgr)` -> float32 (128,) L2-normalised, flip-averaged embedding; `probe(chip_bgr)`:
    the single view first, the flip average only when asked.

    `runtime`: LiteRT, or ONNX Runtime on the same network, its weights exported bit for bit. Either way the model's
    identity (what galleries and events name) is the TFLite file's: the outputs are LiteRT's, bit for bit on 1,197
    of 1,200 LFW chips and within two output steps on the rest (the two runtimes round a tie differently)."""

    def __init__(
        self,
        store: Any,
        num_threads: int = 1,
        interpreter: Any = None,
        model: ModelRef | None = None,
        runtime: Runtime = "litert",
    ) -> None:
        thresholds: dict[str, float] = {}
        runner: TfliteRunner | OnnxRunner
        if interpreter is None:
            entry = store.entry(MODEL_NAME)
            if runtime == "onnxruntime":
                runner = _onnx_runner(store, num_threads)
            else:
                runner = TfliteRunner(store.interpreter(MODEL_NAME, num_threads))
            model = ModelRef(MODEL_NAME, entry.file, entry.sha256)
            thresholds = dict(entry.info.get("thresholds", {}).get("per_comparison", {}))
        else:  # a LiteRT interpreter, or an ONNX Runtime session's runner (tests, the model build)
            runner = interpreter if isinstance(interpreter, OnnxRunner) else TfliteRunner(interpreter)
        self.model = model
        self.runtime = runtime
        # Per-comparison cosine thresholds by false-accept target ("far_1e-3": ...), calibrated by the build.
        self.thresholds = thresholds
        self._runner = runner
        size = self._runner.input_shape[1:3]
        if size != (CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"embedder input is {size}, the aligned chip is {CHIP_SIZE}x{CHIP_SIZE}")
        detail = self._runner.inputs[0]
        # int8 with scale 1 and zero point -128 is pixel - 128, which is the uint8 byte with its top bit
        # flipped; a uint8 input (ONNX Runtime's) is the byte itself: no float round trip per pixel.
        self._flip_top_bit = np.dtype(detail["dtype"]) == np.int8 and tuple(detail["quantization"]) == (
            1.0,
            -128,
        )
        self._bytes_in = np.dtype(detail["dtype"]) == np.uint8

    @property
    def dim(self) -> int:
        return int(self._runner.outputs[0]["shape"][-1])

    def descriptor(self, chip_bgr: np.ndarray, mirrored: bool = False) -> np.ndarray:
        """The model's raw descriptor of a BGR uint8 chip (of its mirror image with `mirrored`)."""
        chip = np.ascontiguousarray(chip_bgr, np.uint8)
        view = chip[:, ::-1] if mirrored else chip
        if self._flip_top_bit:

            def fill(buffer: np.ndarray) -> None:
                np.bitwise_xor(view, np.uint8(0x80), out=buffer[0].view(np.uint8))

            return self._runner.run_filled(fill)[0].reshape(-1)
        if self._bytes_in:

            def copy(buffer: np.ndarray) -> None:
                np.copyto(buffer[0], view)

            return self._runner.run_filled(copy)[0].reshape(-1)
        x = (chip[:, ::-1] if mirrored else chip)[None]
        return self._runner.run(x.astype(np.float32))[0].reshape(-1)

    def embed_chip(self, chip_bgr: np.ndarray) -> np.ndarray:
        """The flip-averaged embedding (two invokes): what templates are made of."""
        return self.probe(chip_bgr).flip()

    def probe(self, chip_bgr: np.ndarray) -> Probe:
        """The chip's single-view embedding now (one invoke); its flip average on demand (one more)."""
        return Probe(self, np.ascontiguousarray(chip_bgr, np.uint8))


class Probe:
    """A chip's embeddings: `single` (the chip alone, L2-normalised) at once, `flip()` (normalised sum with
    its mirror image's, what templates are) computed on the first call and kept. A single-view probe scores
    differently from a flip-averaged one, so it is matched with its own threshold curves
    (device.identity.thresholds: the "single" probe family)."""

    def __init__(self, embedder: Embedder, chip_bgr: np.ndarray) -> None:
        self._embedder, self._chip = embedder, chip_bgr
        self._descriptor = embedder.descriptor(chip_bgr)
        self.single = l2_normalise(self._descriptor)
        self._flip: np.ndarray | None = None

    @property
    def mirrored(self) -> bool:
        """Whether the mirror image has been embedded (the second invoke was paid)."""
        return self._flip is not None

    def flip(self) -> np.ndarray:
        if self._flip is None:
            self._flip = flip_average(self._descriptor, self._embedder.descriptor(self._chip, mirrored=True))
        return self._flip


def aligned_chip(frame_bgr: np.ndarray, detection: Detection, mesh: FaceMesh | None) -> AlignedChip:
    """The chip aligned on this frame's mesh when it found a face, else on the detector keypoints."""
    return align_face(frame_bgr, detection, trusted_xy(mesh))


@dataclass(frozen=True)
class Encoding:
    embedding: np.ndarray  # flip-averaged
    alignment: str
    single: np.ndarray | None = None  # the chip alone (single-view probe), when asked for


class FaceEncoder:
    """The terminal's own path from a detected face to its embedding: mesh, 5-point chip, flip-averaged embed.

    Used by the pipeline, `faceonly evaluate` and template building alike, so that they cannot drift apart.
    """

    def __init__(self, embedder: Embedder, mesh_model: FaceMeshModel | None) -> None:
        self.embedder, self.mesh_model = embedder, mesh_model

    def chip(self, frame_bgr: np.ndarray, detection: Detection, mesh: FaceMesh | None = None) -> AlignedChip:
        """The aligned chip; runs the mesh unless the caller already has this frame's mesh."""
        if mesh is None and self.mesh_model is not None:
            mesh = self.mesh_model.run(frame_bgr, detection)
        return aligned_chip(frame_bgr, detection, mesh)

    def encode(self, frame_bgr: np.ndarray, detection: Detection) -> Encoding:
        """The flip-averaged embedding; `single` holds the single view too (no extra invoke)."""
        chip = self.chip(frame_bgr, detection)
        probe = self.embedder.probe(chip.image)
        return Encoding(probe.flip(), chip.alignment, probe.single)
