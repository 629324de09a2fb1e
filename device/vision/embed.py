"""Face embedding with HSE FaceRes (Human's `faceres`), fed the way it was trained.

The model takes BGR 0..255; the caffe-mean subtraction is folded into the model as its first op, so the
int8 model's int8 input is simply pixel - 128. Its 1024-d descriptor is centred by the mean descriptor of
non-LFW development faces (`embedder_stats`, shipped next to the model) and L2-normalised (with flip test-time
augmentation and roll correction when the stats say so: the build turns them on only if they help on a
development verification set, never on LFW); `similarity` is then a dot product (cosine), in -1..1, higher =
more alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.inference import TfliteRunner
from device.vision.align import CropSpec, crop_face
from device.vision.types import Detection

MODEL_NAME = "embedder"
STATS_NAME = "embedder_stats"


def normalise(descriptors: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Centre (when a mean is given) and L2-normalise rows; float32."""
    x = np.asarray(descriptors, np.float32)
    if mean is not None:
        x = x - np.asarray(mean, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def combine_flip(descriptor: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: the sum of the two L2-normalised descriptors (before centring)."""
    return normalise(descriptor, None) + normalise(flipped, None)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings from `Embedder.embed` (already centred and L2-normalised)."""
    a = np.asarray(a, np.float32).reshape(-1)
    b = np.asarray(b, np.float32).reshape(-1)
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


class Embedder:
    """`embed(frame_bgr, detection)` -> float32 (1024,) L2-normalised embedding."""

    def __init__(
        self,
        store: Any,
        num_threads: int = 1,
        crop: CropSpec | None = None,
        interpreter: Any = None,
        stats: dict[str, np.ndarray] | None = None,
    ) -> None:
        interp = interpreter if interpreter is not None else store.interpreter(MODEL_NAME, num_threads)
        self._runner = TfliteRunner(interp)
        if stats is None:
            stats = store.array(STATS_NAME)
        self.mean = np.asarray(stats["mean"], np.float32) if "mean" in stats else None
        if crop is None:
            crop = CropSpec(correct_roll=bool(stats.get("correct_roll", np.array(False))))
        self.crop_spec = crop
        self.flip = bool(stats.get("flip", np.array(False)))
        size = self._runner.input_shape[1]
        if size != crop.size:
            raise ValueError(f"embedder input is {size}x{size}, crop spec says {crop.size}")

    @property
    def dim(self) -> int:
        return int(self._runner.outputs[0]["shape"][-1])

    def crop(self, frame_bgr: np.ndarray, detection: Detection) -> np.ndarray:
        return crop_face(frame_bgr, detection, self.crop_spec)

    def descriptor(self, crop_bgr: np.ndarray) -> np.ndarray:
        """The model's raw descriptor for a BGR uint8 crop (no centring, no normalisation)."""
        return self._runner.run(crop_bgr.astype(np.float32)[None])[0].reshape(-1)

    def embed_crop(self, crop_bgr: np.ndarray) -> np.ndarray:
        descriptor = self.descriptor(crop_bgr)
        if self.flip:
            descriptor = combine_flip(descriptor, self.descriptor(np.ascontiguousarray(crop_bgr[:, ::-1])))
        return normalise(descriptor, self.mean)

    def embed(self, frame_bgr: np.ndarray, detection: Detection) -> np.ndarray:
        return self.embed_crop(self.crop(frame_bgr, detection))
