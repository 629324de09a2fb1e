"""A thin runner over a LiteRT interpreter that hides int8/float input and output handling.

`run` takes finished input arrays (one copy into the interpreter); `run_filled` lets the caller write the
input straight into the interpreter's own buffer (no intermediate array, no copy), which is what the
per-frame models do: a crop's colour swap and scaling land in the buffer in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class TfliteRunner:
    def __init__(self, interpreter: Any) -> None:
        self._interp = interpreter
        self.inputs = interpreter.get_input_details()
        self.outputs = interpreter.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.inputs[0]["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.inputs[0]["dtype"])

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Float (or already integer) inputs in, float outputs out (dequantized), in output order."""
        for detail, array in zip(self.inputs, arrays, strict=True):
            self._interp.set_tensor(detail["index"], _quantize(array, detail))
        self._interp.invoke()
        return self._outputs()

    def run_filled(self, fill: Callable[[np.ndarray], None]) -> list[np.ndarray]:
        """`fill(buffer)` writes the single input in the model's own dtype and layout into the interpreter's
        input buffer (it must keep no reference to it: the interpreter refuses to run while one is held);
        then invoke, outputs as `run`."""
        buffer = self._interp.tensor(self.inputs[0]["index"])()
        fill(buffer)
        del buffer
        self._interp.invoke()
        return self._outputs()

    def _outputs(self) -> list[np.ndarray]:
        return [_dequantize(self._interp.get_tensor(d["index"]), d) for d in self.outputs]


def _quantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if array.dtype == dtype:
        return array
    if dtype.kind == "f":
        return array.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(array.astype(np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if array.dtype.kind == "f":
        return array  # get_tensor hands out a copy already
    scale, zero_point = detail["quantization"]
    return (array.astype(np.float32) - zero_point) * np.float32(scale)
