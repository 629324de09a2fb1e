"""Quantize a MediaPipe .tflite with ai-edge-quantizer. Runs inside the converter venv.

MediaPipe files use an old schema (operator codes only in `deprecated_builtin_code`); ai-edge-quantizer
silently quantizes nothing unless `builtin_code` is filled in first, so that is fixed here before quantizing.

    python mp_quantize.py --model in.tflite --out out.tflite --recipe static_int8 --calib x.npy \
        [--float-regex classificator]
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
    return bytes(builder.Output()), fixed


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
    ap.add_argument("--recipe", required=True, choices=["static_int8", "dynamic_int8"])
    ap.add_argument("--calib", default=None)
    ap.add_argument("--float-regex", default=None)
    args = ap.parse_args()
    with open(args.model, "rb") as fh:
        content, fixed = fix_schema(fh.read())
    print(
        f"  [aeq] {os.path.basename(args.model)}: fixed {fixed} operator codes; recipe {args.recipe}",
        flush=True,
    )
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
