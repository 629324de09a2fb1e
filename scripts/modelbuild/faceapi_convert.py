"""dlib ResNet face descriptor (@vladmandic/face-api weights, no graph) -> TFLite. Converter venv only.

Usage (called by faceapi.py):
    python faceapi_convert.py --manifest model/face_recognition_model-weights_manifest.json \
        --float-out f.tflite [--int8-out q.tflite --calib chips_bgr.npy] [--report r.json]

The manifest holds layer weights only, so the network (face-api's src/faceRecognitionNet) is rebuilt here:
conv 7x7/2 'valid' + ReLU, max-pool 3x3/2 'valid', residual blocks (the down blocks' average-pool shortcut as
an equivalent conv, see shortcut_kernel), global mean, fc 256 -> 128. Every conv is
followed by a per-channel scale layer (x * w + b) and the input is normalised as (rgb - mean) / 255; both are
folded into the convolutions (exact in real numbers: the first conv is 'valid', so no padded pixel ever sees
the mean). Reversing the first conv's input channels makes the model take BGR 0..255, the camera's order.
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

SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)  # face-api's FaceRecognitionNet.forwardInput
BLOCKS = (
    ("conv32_1", False),
    ("conv32_2", False),
    ("conv32_3", False),
    ("conv64_down", True),
    ("conv64_1", False),
    ("conv64_2", False),
    ("conv64_3", False),
    ("conv128_down", True),
    ("conv128_1", False),
    ("conv128_2", False),
    ("conv256_down", True),
    ("conv256_1", False),
    ("conv256_2", False),
    ("conv256_down_out", True),
)
# tf.io.decodeWeights: quantized entries are stored as these integer types
QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}
RAW_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}


def decode_weights(manifest_path: str) -> dict[str, np.ndarray]:
    """Every entry of a TFJS weights manifest, in manifest order, decoded like tf.io.decodeWeights."""
    folder = os.path.dirname(os.path.abspath(manifest_path))
    with open(manifest_path) as fh:
        manifest = json.load(fh)
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b""
        for name in group["paths"]:
            with open(os.path.join(folder, name), "rb") as fh:
                data += fh.read()
        offset = 0
        for entry in group["weights"]:
            count = int(np.prod(entry["shape"], dtype=np.int64))
            quant = entry.get("quantization")
            if quant:
                stored = np.frombuffer(data, QUANT_DTYPES[quant["dtype"]], count, offset)
                offset += stored.nbytes
                if quant["dtype"] == "float16":
                    values = stored.astype(np.float32)
                else:
                    # JS computes v * scale + min in double and stores it into a Float32Array
                    values = (stored.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
            else:
                values = np.frombuffer(data, RAW_DTYPES[entry["dtype"]], count, offset).copy()
                offset += values.nbytes
            out[entry["name"]] = values.reshape(entry["shape"])
        if offset != len(data):
            raise SystemExit(f"weights manifest: {len(data) - offset} bytes left over in {group['paths']}")
    return out


def folded_conv(w: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(filters HWIO, bias) of conv + bias + scale layer: conv(x, f * s) + (b * s + t), in float64."""
    f = w[f"{prefix}/conv/filters"].astype(np.float64)
    b = w[f"{prefix}/conv/bias"].astype(np.float64)
    s = w[f"{prefix}/scale/weights"].astype(np.float64)
    t = w[f"{prefix}/scale/biases"].astype(np.float64)
    return f * s, b * s + t


def first_conv_bgr(w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The stem conv with (rgb - mean) / 255 folded in, input channels reversed to take BGR 0..255."""
    f, b = folded_conv(w, "conv32_down")
    mean = np.asarray(MEAN_RGB, np.float64)
    b = b - np.einsum("hwio,i->o", f, mean) / 255.0
    return f[:, :, ::-1, :] / 255.0, b


def shortcut_kernel(cin: int, cout: int):
    """2x2 stride-2 conv = face-api's avgPool(2, 2, 'valid') + zero-padding the channels from cin to cout.

    Same numbers as the pool and the pad, but XNNPACK (ai-edge-litert) does not take an int8 AVERAGE_POOL_2D:
    with the pool the int8 graph fell into 5 delegate partitions, with this conv it is one. 0.25 is exact in
    per-channel int8 (127 * 0.25/127).
    """
    k = np.zeros((2, 2, cin, cout), np.float32)
    k[:, :, np.arange(cin), np.arange(cin)] = 0.25
    return tf.constant(k)


def build_function(w: dict[str, np.ndarray]):
    """The network as a tf.function on (1, 150, 150, 3) float BGR 0..255 -> (1, 128) descriptor."""

    def const(a: np.ndarray):
        return tf.constant(np.ascontiguousarray(a, dtype=np.float32))

    stem = [const(a) for a in first_conv_bgr(w)]
    blocks = []
    for name, down in BLOCKS:
        convs = [const(a) for p in ("conv1", "conv2") for a in folded_conv(w, f"{name}/{p}")]
        blocks.append((down, convs))
    fc = const(w["fc"])

    def conv(x, f, b, stride, padding, relu):
        y = tf.nn.conv2d(x, f, stride, padding) + b
        return tf.nn.relu(y) if relu else y

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, name="image")])
    def model(image):
        x = conv(image, *stem, 2, "VALID", True)
        x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        for down, (f1, b1, f2, b2) in blocks:
            if not down:
                y = conv(conv(x, f1, b1, 1, "SAME", True), f2, b2, 1, "SAME", False)
                x = tf.nn.relu(y + x)
                continue
            y = conv(conv(x, f1, b1, 2, "VALID", True), f2, b2, 1, "SAME", False)
            short = tf.nn.conv2d(x, shortcut_kernel(x.shape[3], y.shape[3]), 2, "VALID")
            # face-api's residualDown: where the 'valid' stride-2 conv comes out one smaller than the pooled
            # shortcut (8 -> 3 vs 4, 4 -> 1 vs 2) it appends one zero row at the bottom and one zero column
            # at the right of the conv branch
            grow = short.shape[1] - y.shape[1]
            if grow:
                y = tf.pad(y, [[0, 0], [0, grow], [0, grow], [0, 0]])
            x = tf.nn.relu(short + y)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), fc)

    return model.get_concrete_function()


def convert(concrete, calib: np.ndarray | None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if calib is not None:

        def representative():
            # fixed order, no sampling: calibration ranges (and so the file) are the same on every build
            for chip in calib:
                yield [chip[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.float32
    return converter.convert()


def input_quantization(model: bytes) -> tuple[float, int]:
    interp = tf.lite.Interpreter(model_content=model)
    scale, zero = interp.get_input_details()[0]["quantization"]
    return float(scale), int(zero)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True, help="face_recognition_model-weights_manifest.json")
    ap.add_argument("--float-out", required=True)
    ap.add_argument("--int8-out", default=None)
    ap.add_argument("--calib", default=None, help=".npy (N,150,150,3) uint8 BGR chips")
    ap.add_argument("--report", default=None, help="write a JSON report here")
    args = ap.parse_args()
    weights = decode_weights(args.manifest)
    params = sum(int(a.size) for a in weights.values())
    print(f"  [tf] decoded {len(weights)} weight tensors, {params} parameters", flush=True)
    concrete = build_function(weights)
    with open(args.float_out, "wb") as fh:
        fh.write(convert(concrete, None))
    print(f"  [tf] wrote {args.float_out}", flush=True)
    report: dict = {"weight_tensors": len(weights), "parameters": params}
    if args.int8_out:
        calib = np.load(args.calib)
        if calib.dtype != np.uint8 or calib.shape[1:] != (SIZE, SIZE, 3):
            raise SystemExit(
                f"--calib must be (N,{SIZE},{SIZE},3) uint8 BGR chips, got {calib.dtype} {calib.shape}"
            )
        print(f"  [tf] int8 calibration on {len(calib)} chips ...", flush=True)
        model = convert(concrete, calib)
        quant = input_quantization(model)
        # (1.0, -128) lets the runtime feed pixel - 128 with no rounding; it only comes out when the
        # calibration chips span 0..255 exactly (black borders, white pixels): anything else is a bad set
        if quant != (1.0, -128):
            raise SystemExit(f"int8 input quantization is {quant}, expected exactly (1.0, -128)")
        with open(args.int8_out, "wb") as fh:
            fh.write(model)
        print(f"  [tf] wrote {args.int8_out} (input quantization {quant})", flush=True)
        report.update(calibration_count=len(calib), input_quantization=list(quant))
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
