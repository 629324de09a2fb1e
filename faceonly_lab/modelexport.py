"""A quantized TFLite graph written out as the same graph for ONNX Runtime: the embedder's second runtime.

Nothing is re-quantized: every weight, bias, scale and zero point is the TFLite model's own, so both runtimes
compute the same integers but where they round a requantization tie differently (the build checks the outputs
on real faces: bit-identical on 1,197 of 1,200 LFW chips, within two output steps on the rest). The graph is
written in ONNX's QDQ form, which ONNX Runtime fuses into its integer kernels (QLinearConv, QLinearAdd,
QLinearMatMul).

Activations and weights go to uint8 by adding 128 to the values and to the zero points, which represents the
same real numbers exactly. Signed int8 weights would be faster still on this CPU, but ONNX Runtime's AVX2 kernels
without VNNI add u8 x s8 products in pairs into int16 (vpmaddubsw), which saturates on full-range 8-bit weights:
on LFW chips the descriptor then moved by up to 0.12 (cosine to LiteRT's down to 0.946). With uint8 weights it
takes its widening path and the outputs equal LiteRT's.

Only the operators of the shipped embedder are known (CONV_2D, ADD, PAD, MAX_POOL_2D, MEAN over H and W,
FULLY_CONNECTED, DEQUANTIZE); any other operator, fused activation or quantization this does not reproduce
exactly is refused with an error, never approximated. Needs the `onnx` and `tflite` packages (lab extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPSET = 19
IR_VERSION = 9
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


class ExportError(ValueError):
    """The TFLite graph holds something this exporter cannot reproduce exactly."""


def _same_pads(size_in: list[int], size_out: list[int], kernel: list[int], strides: list[int]) -> list[int]:
    """TFLite's SAME padding as ONNX's explicit [top, left, bottom, right] (the extra pixel at the end)."""
    total = [
        max((o - 1) * s + k - i, 0) for i, o, k, s in zip(size_in, size_out, kernel, strides, strict=True)
    ]
    return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]


class _Exporter:
    def __init__(self, content: bytes) -> None:
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator

        self.tfl = tflite
        self.model = tflite.Model.GetRootAsModel(content, 0)
        if self.model.SubgraphsLength() != 1:
            raise ExportError("only a single-subgraph model can be exported")
        self.graph = self.model.Subgraphs(0)
        self.op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    # ---- tensors ----------------------------------------------------------------------------------
    def _tensor(self, index: int) -> Any:
        return self.graph.Tensors(index)

    def _shape(self, index: int) -> list[int]:
        return [int(v) for v in self._tensor(index).ShapeAsNumpy()]

    def _quantization(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        q = self._tensor(index).Quantization()
        if q is None or q.ScaleLength() == 0:
            raise ExportError(f"tensor {index} is not quantized")
        return (
            q.ScaleAsNumpy().astype(np.float32),
            q.ZeroPointAsNumpy().astype(np.int64),
            q.QuantizedDimension(),
        )

    def _constant(self, index: int) -> np.ndarray:
        t = self._tensor(index)
        dtypes = {self.tfl.TensorType.INT8: np.int8, self.tfl.TensorType.INT32: np.int32}
        if t.Type() not in dtypes:
            raise ExportError(f"constant tensor {index} has type {t.Type()}, not int8 or int32")
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if not isinstance(data, np.ndarray):
            raise ExportError(f"constant tensor {index} has no data")
        return np.frombuffer(data.tobytes(), dtypes[t.Type()]).reshape(self._shape(index))

    def _activation(self, index: int) -> tuple[np.float32, np.uint8]:
        """Scale and uint8 zero point of an int8 activation tensor (per tensor)."""
        if self._tensor(index).Type() != self.tfl.TensorType.INT8:
            raise ExportError(f"activation tensor {index} is not int8")
        scale, zero_point, _ = self._quantization(index)
        if scale.size != 1:
            raise ExportError(f"activation tensor {index} is quantized per channel")
        return np.float32(scale[0]), np.uint8(int(zero_point[0]) + 128)

    # ---- graph building ---------------------------------------------------------------------------
    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def _init(self, stem: str, value: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        name = self._name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def _node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))

    def _dequantized(self, index: int) -> str:
        scale, zero_point = self._activation(index)
        out = self._name(f"real{index}")
        self._node(
            "DequantizeLinear", [f"t{index}", self._init("s", scale), self._init("z", zero_point)], [out]
        )
        return out

    def _quantize_to(self, real: str, index: int, activation: int) -> None:
        scale, zero_point = self._activation(index)
        relu = self.tfl.ActivationFunctionType.RELU
        if activation == relu and zero_point != 0:
            raise ExportError(f"a fused ReLU on tensor {index} is not the saturation at its zero point")
        if activation not in (relu, self.tfl.ActivationFunctionType.NONE):
            raise ExportError(f"fused activation {activation} on tensor {index}")
        self._node(
            "QuantizeLinear", [real, self._init("s", scale), self._init("z", zero_point)], [f"t{index}"]
        )

    def _weights(self, index: int, layout: tuple[int, ...], axis: int) -> str:
        """Real-valued view of int8 symmetric weights, stored as uint8 (+128) with their per-channel scales."""
        scale, zero_point, dimension = self._quantization(index)
        if np.any(zero_point) or (scale.size > 1 and dimension != 0):
            raise ExportError(f"weights {index} are not symmetric per output channel")
        values = (self._constant(index).astype(np.int16) + 128).astype(np.uint8).transpose(layout)
        out = self._name(f"w{index}")
        per_channel = scale.size > 1
        z = np.full(scale.size, 128, np.uint8) if per_channel else np.asarray(128, np.uint8)
        s = scale if per_channel else np.asarray(scale[0])
        attrs = {"axis": axis} if per_channel else {}
        self._node(
            "DequantizeLinear",
            [self._init("w", values), self._init("s", s), self._init("z", z)],
            [out],
            **attrs,
        )
        return out

    def _options(self, op: Any, cls: Any) -> Any:
        table = op.BuiltinOptions()
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def conv(self, op: Any) -> None:
        o = self._options(op, self.tfl.Conv2DOptions)
        x, w, b = (int(v) for v in op.InputsAsNumpy())
        y = op.Outputs(0)
        weights = self._weights(w, (0, 3, 1, 2), 0)  # TFLite OHWI -> ONNX OIHW
        bias_scale, bias_zero, _ = self._quantization(b)
        if np.any(bias_zero):
            raise ExportError(f"bias {b} has a zero point")
        bias = self._name(f"b{b}")
        self._node(
            "DequantizeLinear",
            [
                self._init("b", self._constant(b)),
                self._init("s", bias_scale),
                self._init("z", np.zeros_like(bias_zero, np.int32)),
            ],
            [bias],
            axis=0,
        )
        kernel = self._shape(w)[1:3]
        strides = [o.StrideH(), o.StrideW()]
        same = o.Padding() == self.tfl.Padding.SAME
        pads = _same_pads(self._shape(x)[1:3], self._shape(y)[1:3], kernel, strides) if same else [0, 0, 0, 0]
        real = self._name("conv")
        self._node(
            "Conv",
            [self._dequantized(x), weights, bias],
            [real],
            kernel_shape=kernel,
            strides=strides,
            pads=pads,
            dilations=[o.DilationHFactor(), o.DilationWFactor()],
        )
        self._quantize_to(real, y, o.FusedActivationFunction())

    def add(self, op: Any) -> None:
        o = self._options(op, self.tfl.AddOptions)
        a, b = (int(v) for v in op.InputsAsNumpy())
        real = self._name("add")
        self._node("Add", [self._dequantized(a), self._dequantized(b)], [real])
        self._quantize_to(real, op.Outputs(0), o.FusedActivationFunction())

    def pad(self, op: Any) -> None:
        x, paddings = (int(v) for v in op.InputsAsNumpy())
        y = op.Outputs(0)
        if self._activation(x) != self._activation(y):
            raise ExportError("PAD changes the quantization")
        nchw = self._constant(paddings)[[0, 3, 1, 2]].astype(np.int64)  # NHWC [4, 2] -> NCHW
        zero = self._activation(x)[1]  # the zero point is the real 0 TFLite pads with
        pads = self._init("pads", np.concatenate([nchw[:, 0], nchw[:, 1]]))
        self._node("Pad", [f"t{x}", pads, self._init("v", zero)], [f"t{y}"])

    def max_pool(self, op: Any) -> None:
        o = self._options(op, self.tfl.Pool2DOptions)
        x, y = op.Inputs(0), op.Outputs(0)
        if self._activation(x) != self._activation(y) or o.FusedActivationFunction():
            raise ExportError("MAX_POOL_2D changes the quantization or has a fused activation")
        kernel, strides = [o.FilterHeight(), o.FilterWidth()], [o.StrideH(), o.StrideW()]
        same = o.Padding() == self.tfl.Padding.SAME
        pads = _same_pads(self._shape(x)[1:3], self._shape(y)[1:3], kernel, strides) if same else [0, 0, 0, 0]
        self._node("MaxPool", [f"t{x}"], [f"t{y}"], kernel_shape=kernel, strides=strides, pads=pads)

    def mean(self, op: Any) -> None:
        x, axes = (int(v) for v in op.InputsAsNumpy())
        if sorted(self._constant(axes).tolist()) != [1, 2] or len(self._shape(op.Outputs(0))) != 2:
            raise ExportError("MEAN other than over height and width to (N, C)")
        pooled, flat = self._name("pool"), self._name("flat")
        self._node("GlobalAveragePool", [self._dequantized(x)], [pooled])
        self._node("Flatten", [pooled], [flat], axis=1)
        self._quantize_to(flat, op.Outputs(0), self.tfl.ActivationFunctionType.NONE)

    def fully_connected(self, op: Any) -> None:
        o = self._options(op, self.tfl.FullyConnectedOptions)
        inputs = [int(v) for v in op.InputsAsNumpy()]
        if len(inputs) > 2 and inputs[2] >= 0:
            raise ExportError("FULLY_CONNECTED with a bias")
        real = self._name("fc")
        weights = self._weights(inputs[1], (1, 0), 1)  # [out, in] -> [in, out]
        self._node("MatMul", [self._dequantized(inputs[0]), weights], [real])
        self._quantize_to(real, op.Outputs(0), o.FusedActivationFunction())

    def dequantize(self, op: Any) -> None:
        x = op.Inputs(0)
        scale, zero_point = self._activation(x)
        self._node(
            "DequantizeLinear", [f"t{x}", self._init("s", scale), self._init("z", zero_point)], [OUTPUT_NAME]
        )

    def export(self) -> bytes:
        import onnx
        from onnx import TensorProto, helper

        if self.graph.InputsLength() != 1 or self.graph.OutputsLength() != 1:
            raise ExportError("only a model with one input and one output can be exported")
        image = self.graph.Inputs(0)
        if self._activation(image) != (np.float32(1.0), np.uint8(0)):
            raise ExportError("the input is not int8 pixel - 128 (scale 1, zero point -128)")
        # The input is the chip's bytes (uint8 NHWC = TFLite's int8 + 128), turned to NCHW.
        self._node("Transpose", [INPUT_NAME], [f"t{image}"], perm=[0, 3, 1, 2])
        handlers = {
            "CONV_2D": self.conv,
            "ADD": self.add,
            "PAD": self.pad,
            "MAX_POOL_2D": self.max_pool,
            "MEAN": self.mean,
            "FULLY_CONNECTED": self.fully_connected,
            "DEQUANTIZE": self.dequantize,
        }
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = self.op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            if name not in handlers:
                raise ExportError(f"operator {name} is not supported")
            handlers[name](op)
        output = self.graph.Outputs(0)
        graph = helper.make_graph(
            self.nodes,
            "embedder",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, self._shape(image))],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, self._shape(output))],
            self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="faceonly"
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString(deterministic=True)


def export_embedder(tflite_content: bytes) -> bytes:
    """The ONNX model (serialized) computing what the int8 TFLite embedder computes; ExportError if it cannot."""
    return _Exporter(tflite_content).export()
