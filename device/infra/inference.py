"""Thin runners over a LiteRT interpreter (int8/float input and output handling hidden) and over an ONNX Runtime
session, with one interface.

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


class OnnxRunner:
    """An ONNX Runtime session behind TfliteRunner's interface: one input buffer of the model's own dtype,
    reused for every run (ONNX Runtime reads it, the caller fills it); its outputs are already real-valued."""

    def __init__(self, session: Any) -> None:
        self._session = session
        (first,) = session.get_inputs()
        if first.type not in _ONNX_TYPES or not all(isinstance(d, int) for d in first.shape):
            raise ValueError(
                f"ONNX input {first.name}: {first.type} {first.shape} (a fixed-size uint8 or float input)"
            )
        dtype = _ONNX_TYPES[first.type]
        self._name = first.name
        self._buffer = np.zeros(tuple(int(d) for d in first.shape), dtype=dtype)
        self.inputs = [
            {"name": first.name, "shape": np.array(first.shape), "dtype": dtype, "quantization": (0.0, 0)}
        ]
        self.outputs = [{"name": o.name, "shape": np.array(o.shape)} for o in session.get_outputs()]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._buffer.shape)

    @property
    def input_dtype(self) -> np.dtype:
        return self._buffer.dtype

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        (array,) = arrays
        np.copyto(self._buffer, array, casting="unsafe")
        return self._run()

    def run_filled(self, fill: Callable[[np.ndarray], None]) -> list[np.ndarray]:
        fill(self._buffer)
        return self._run()

    def _run(self) -> list[np.ndarray]:
        return [np.asarray(o, np.float32) for o in self._session.run(None, {self._name: self._buffer})]


_ONNX_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(float)": np.dtype(np.float32),
}


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
