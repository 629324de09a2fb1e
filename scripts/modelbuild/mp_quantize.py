"""Quantize a MediaPipe .tflite with ai-edge-quantizer. Runs inside the converter venv.

MediaPipe files use an old schema (operator codes only in `deprecated_builtin_code`); ai-edge-quantizer
silently quantizes nothing unless `builtin_code` is filled in first, so that is fixed here before quantizing.

    python mp_quantize.py --model in.tflite --out out.tflite --recipe static_int8 --calib x.npy \
        [--float-regex classificator]
`--recipe float32` only fixes the schema and folds float16 weights (the exact float32 reference).
`--calib`: (N, H, W, 3) float32 in the model's own input range. `--float-regex`: tensors whose producing op
stays float (e.g. the detector's score head, whose logits reach about -1000 and would wreck an int8 scale).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import flatbuffers
import numpy as np
from ai_edge_quantizer import quantizer, recipe_manager
from ai_edge_quantizer.algorithm_manager import AlgorithmName
from ai_edge_quantizer.qtyping import TFLOperationName
from ai_edge_quantizer.utils import tfl_interpreter_utils
from tensorflow.lite.python import schema_py_generated as schema


def fix_schema(content: bytes) -> tuple[bytes, int]:
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    fixed = 0
    for code in model.operatorCodes:
        if code.builtinCode < code.deprecatedBuiltinCode:
            code.builtinCode = code.deprecatedBuiltinCode
            fixed += 1
    folded = fold_float16_weights(model)
    if not model.signatureDefs:  # ai-edge-quantizer addresses inputs through a signature
        graph = model.subgraphs[0]

        def tmap(index):
            t = schema.TensorMapT()
            t.name, t.tensorIndex = graph.tensors[index].name, index
            return t

        sig = schema.SignatureDefT()
        sig.signatureKey = b"serving_default"
        sig.subgraphIndex = 0
        sig.inputs = [tmap(i) for i in graph.inputs]
        sig.outputs = [tmap(i) for i in graph.outputs]
        model.signatureDefs = [sig]
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), fixed, folded


def fold_float16_weights(model) -> int:
    """Constant float16 weights -> DEQUANTIZE -> float32 become float32 constants (the DEQUANTIZE op goes).

    MediaPipe's detectors store weights and biases as float16 behind DEQUANTIZE ops; ai-edge-quantizer expects
    constant conv inputs and fails on the bias ('NoneType' object has no attribute 'ndim') otherwise. Exact:
    float16 -> float32 is lossless.
    """
    dequantize = {
        i for i, c in enumerate(model.operatorCodes) if max(c.builtinCode, c.deprecatedBuiltinCode) == 6
    }
    folded = 0
    for graph in model.subgraphs:
        keep = []
        for op in graph.operators:
            src = graph.tensors[op.inputs[0]] if op.opcodeIndex in dequantize else None
            buffer = model.buffers[src.buffer] if src is not None else None
            if buffer is None or buffer.data is None or len(buffer.data) == 0 or src.type != 1:  # 1: FLOAT16
                keep.append(op)
                continue
            weights = np.frombuffer(bytes(bytearray(buffer.data)), np.float16).astype(np.float32)
            out = schema.BufferT()
            out.data = np.frombuffer(weights.tobytes(), np.uint8)
            model.buffers.append(out)
            graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
            folded += 1
        graph.operators = keep
        _drop_unused_tensors(graph)
    return folded


def _drop_unused_tensors(graph) -> None:
    """Remove tensors no op or graph input/output refers to (the folded float16 originals), reindexing."""
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.operators:
        used |= {i for i in list(op.inputs) + list(op.outputs) if i >= 0}
    new_index = {old: new for new, old in enumerate(sorted(used))}
    graph.tensors = [graph.tensors[i] for i in sorted(used)]
    graph.inputs = [new_index[i] for i in graph.inputs]
    graph.outputs = [new_index[i] for i in graph.outputs]
    for op in graph.operators:
        op.inputs = [new_index[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [new_index[i] for i in op.outputs]


def make_recipe(kind: str, float_regex: str | None):
    rm = recipe_manager.RecipeManager()
    if kind == "static_int8":
        rm.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, 8, 8)
    elif kind == "dynamic_int8":
        rm.add_dynamic_config(".*", TFLOperationName.ALL_SUPPORTED, 8)
    else:
        raise SystemExit(f"unknown recipe {kind}")
    if float_regex:
        rm.add_quantization_config(
            regex=float_regex,
            operation_name=TFLOperationName.ALL_SUPPORTED,
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    return rm.get_quantization_recipe()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipe", required=True, choices=["static_int8", "dynamic_int8", "float32"])
    ap.add_argument("--calib", default=None)
    ap.add_argument("--float-regex", default=None)
    args = ap.parse_args()
    with open(args.model, "rb") as fh:
        content, fixed, folded = fix_schema(fh.read())
    print(
        f"  [aeq] {os.path.basename(args.model)}: fixed {fixed} operator codes, folded {folded} float16 "
        f"weights; recipe {args.recipe}",
        flush=True,
    )
    if (
        args.recipe == "float32"
    ):  # the exact float reference: float16 weights folded to float32, no quantizing
        with open(args.out, "wb") as fh:
            fh.write(content)
        print(f"  [aeq] wrote {args.out}", flush=True)
        return 0
    qt = quantizer.Quantizer(bytearray(content), make_recipe(args.recipe, args.float_regex))
    calibration = None
    if qt.need_calibration:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_content=content)
        name = next(iter(interp.get_signature_list()["serving_default"]["inputs"]))
        data = np.load(args.calib).astype(np.float32)
        samples = [{name: x[None]} for x in data]
        calibration = qt.calibrate({tfl_interpreter_utils.DEFAULT_SIGNATURE_KEY: samples}, num_threads=2)
        print(f"  [aeq] calibrated on {len(samples)} samples", flush=True)
    result = qt.quantize(calibration, enable_progress_report=False)
    with open(args.out, "wb") as fh:
        fh.write(bytes(result.quantized_model))
    print(f"  [aeq] wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
