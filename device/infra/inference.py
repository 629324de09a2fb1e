"""A thin runner over a LiteRT interpreter that hides int8/float input and output handling."""

from __future__ import annotations

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
        return array.copy()
    scale, zero_point = detail["quantization"]
    return (array.astype(np.float32) - zero_point) * np.float32(scale)
