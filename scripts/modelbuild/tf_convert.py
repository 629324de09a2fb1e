"""TFJS graph model -> TFLite (builtin ops only). Runs inside the converter venv, never in `device`.

Usage (called by scripts/build_models.py):
    python tf_convert.py --model faceres.json --input input_1 --output global_pooling/Mean \
        --size 224 --mean-bgr 103.939,116.779,123.68 --float-out f.tflite [--int8-out q.tflite --calib crops.npy]

Exact graph rewrites applied before conversion (each is an identity on real numbers, so the float model is
unchanged; they only let the int8 model stay on XNNPACK in one piece):
  - Maximum(Minimum(Relu(x), 6), 0)  ->  Relu6(x)     (then Relu6 fuses into the preceding conv)
  - Relu(x) followed by Minimum(., 6) alone -> Relu6(x)
The input mean is folded in as the model's first op, so an int8 model with int8 input (pixel - 128) can take
raw BGR 0..255 pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from tfjs_graph_converter import api
from tfjs_graph_converter.common import CompatMode


def _const(nodes: dict, name: str) -> np.ndarray | None:
    node = nodes.get(name.split(":")[0].lstrip("^"))
    if node is None or node.op != "Const":
        return None
    return tf.make_ndarray(node.attr["value"].tensor)


def _consumers(graph_def) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph_def.node:
        for inp in node.input:
            out.setdefault(inp.split(":")[0].lstrip("^"), []).append(node)
    return out


def fuse_relu6(graph_def) -> int:
    """Rewrite relu/min(6)/max(0) chains into Relu6 in place; return how many were rewritten."""
    nodes = {n.name: n for n in graph_def.node}
    users = _consumers(graph_def)
    removed: set[str] = set()
    count = 0
    for node in list(graph_def.node):
        if node.op != "Maximum" or len(node.input) != 2:
            continue
        mins = [
            i
            for i in node.input
            if nodes.get(i.split(":")[0]) is not None and nodes[i.split(":")[0]].op == "Minimum"
        ]
        if len(mins) != 1:
            continue
        zero = _const(nodes, next(i for i in node.input if i != mins[0]))
        mnode = nodes[mins[0].split(":")[0]]
        relus = [i for i in mnode.input if nodes[i.split(":")[0]].op == "Relu"]
        if zero is None or np.any(zero != 0) or len(relus) != 1:
            continue
        six = _const(nodes, next(i for i in mnode.input if i != relus[0]))
        rnode = nodes[relus[0].split(":")[0]]
        if six is None or np.any(six != 6):
            continue
        if len(users.get(rnode.name, [])) != 1 or len(users.get(mnode.name, [])) != 1:
            continue
        rnode.op = "Relu6"
        dtype = node.attr["T"].type
        node.op = "Identity"
        del node.input[:]
        node.input.append(rnode.name)
        for key in list(node.attr.keys()):
            del node.attr[key]
        node.attr["T"].type = dtype
        removed.add(mnode.name)
        count += 1
    kept = [n for n in graph_def.node if n.name not in removed]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    return count


def build_function(model_json: str, input_name: str, outputs: list[str], size: int, mean_bgr, relu6: bool):
    graph = api.load_graph_model(model_json, compat_mode=CompatMode.TFLITE)
    graph_def = graph.as_graph_def()
    rewrites = fuse_relu6(graph_def) if relu6 else 0

    def _import():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    g = wrapped.graph
    pruned = wrapped.prune(
        g.get_tensor_by_name(input_name + ":0"), [g.get_tensor_by_name(o + ":0") for o in outputs]
    )
    mean = None if mean_bgr is None else tf.constant(np.asarray(mean_bgr, np.float32).reshape(1, 1, 1, 3))

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
    def model(image):
        x = image - mean if mean is not None else image
        result = pruned(x)
        return result[0] if len(outputs) == 1 else tuple(result)

    return model.get_concrete_function(), pruned, rewrites


def convert(concrete, pruned, calib: np.ndarray | None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], pruned)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if calib is not None:

        def representative():
            for crop in calib:
                yield [crop[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.float32
    return converter.convert()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", action="append", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--mean-bgr", default=None, help="B,G,R mean folded in as the first op")
    ap.add_argument("--no-relu6", action="store_true")
    ap.add_argument("--float-out", required=True)
    ap.add_argument("--int8-out", default=None)
    ap.add_argument(
        "--calib", default=None, help=".npy (N,H,W,3) uint8 calibration crops, model colour order"
    )
    ap.add_argument("--report", default=None, help="write a JSON report here")
    args = ap.parse_args()
    mean = [float(v) for v in args.mean_bgr.split(",")] if args.mean_bgr else None
    concrete, pruned, rewrites = build_function(
        args.model, args.input, args.output, args.size, mean, relu6=not args.no_relu6
    )
    print(f"  [tf] {os.path.basename(args.model)}: {rewrites} relu/min/max chains -> Relu6", flush=True)
    with open(args.float_out, "wb") as fh:
        fh.write(convert(concrete, pruned, None))
    print(f"  [tf] wrote {args.float_out}", flush=True)
    report = {"relu6_rewrites": rewrites}
    if args.int8_out:
        calib = np.load(args.calib)
        print(f"  [tf] int8 calibration on {len(calib)} crops ...", flush=True)
        with open(args.int8_out, "wb") as fh:
            fh.write(convert(concrete, pruned, calib))
        print(f"  [tf] wrote {args.int8_out}", flush=True)
        report["calibration_count"] = len(calib)
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
