"""dlib ResNet face descriptor (npm @vladmandic/face-api) -> float + int8 TFLite, and the checks the manifest
records: parity with the JS package itself, int8 vs float, one XNNPACK partition, latency, size, determinism.

Runs in the project venv; the conversion itself runs in the converter venv (faceapi_convert.py).

    float_path, int8_path = convert(py, tgz, work, calib_npy, log)
    report = validate(float_path, int8_path, parity_chips, agreement_chips, jsref, log,
                      rebuild=lambda: convert(py, tgz, work / "rebuild", calib_npy, log))

Chips are (N, 150, 150, 3) uint8 BGR arrays (or .npy paths): the TFLite models take BGR 0..255; face-api is
fed the same chips in RGB, its own colour order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import evaluate, faceapi_js
from .evaluate import interpreter
from .fetch import check_face_api_model, extract_face_api, run_in_converter, sha256_file

MANIFEST = "face_recognition_model-weights_manifest.json"
PARITY_MIN_COSINE = 0.9999  # float TFLite vs face-api in node, every chip
PARITY_MIN_CHIPS = 10
AGREEMENT_MIN_MEAN = 0.99  # int8 vs float TFLite, mean cosine
AGREEMENT_MIN_CHIPS = 200
INT8_INPUT_QUANTIZATION = (1.0, -128)

Chips = np.ndarray | Path | str


def weights_dir(source: Path, work: Path) -> Path:
    """The verified model/ folder of a face-api tarball (extracted into work) or of an extracted package."""
    if source.is_file():
        return extract_face_api(source, work / "face-api")
    for folder in (source, source / "model", source / "package" / "model"):
        if (folder / MANIFEST).is_file():
            check_face_api_model(folder)
            return folder
    raise SystemExit(f"no {MANIFEST} in {source}")


def convert(py: Path, source: Path, work: Path, calib_chips_npy: Path, log=print) -> tuple[Path, Path]:
    """(float, int8) TFLite in work/, from the tarball (or extracted package) and BGR calibration chips."""
    work.mkdir(parents=True, exist_ok=True)
    model = weights_dir(Path(source), work)
    float_path, int8_path = work / "dlib_float.tflite", work / "dlib_int8.tflite"
    args = ["--manifest", str(model / MANIFEST), "--float-out", str(float_path)]
    args += ["--int8-out", str(int8_path), "--calib", str(calib_chips_npy)]
    run_in_converter(py, "faceapi_convert.py", args, log)
    return float_path, int8_path


def latency_ms(path: Path, chip_bgr: np.ndarray, repeats: int = 50) -> float:
    """Median 1-thread invoke time on a real chip (default XNNPACK delegate)."""
    return evaluate.latency_ms(path, repeats, feed=lambda interp: _set_input(interp, chip_bgr))


def _set_input(interp, chip_bgr: np.ndarray) -> None:
    inp = interp.get_input_details()[0]
    x = chip_bgr[None].astype(np.float32)
    if np.dtype(inp["dtype"]) == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interp.set_tensor(inp["index"], x)


def load_chips(chips: Chips) -> np.ndarray:
    arr = np.load(chips) if isinstance(chips, (str, Path)) else np.asarray(chips)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (150, 150, 3):
        raise ValueError(f"chips must be (N, 150, 150, 3) uint8 BGR, got {arr.dtype} {arr.shape}")
    return arr


def describe(path: Path, chips_bgr: np.ndarray) -> np.ndarray:
    """(N, 128) descriptors from a TFLite model (float or int8 input), one chip per invoke."""
    interp = interpreter(path)
    out = interp.get_output_details()[0]["index"]
    rows = []
    for chip in chips_bgr:
        _set_input(interp, chip)
        interp.invoke()
        rows.append(interp.get_tensor(out)[0].copy())
    return np.stack(rows)


def xnnpack_partitions(path: Path) -> dict:
    """Delegate partitions of the model under ai-edge-litert's default XNNPACK delegate.

    This ai-edge-litert no longer prints "Replacing N out of M node(s) ... yielding K partitions", so the
    partitions are counted from the execution graph itself: each one is a DELEGATE node appended after the
    model's own nodes. With one partition that takes the model input and yields every model output, no op
    runs outside XNNPACK.
    """
    interp = interpreter(path)
    nodes = interp._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    model_in = {d["index"] for d in interp.get_input_details()}
    model_out = {d["index"] for d in interp.get_output_details()}
    whole = (
        len(delegates) == 1
        and model_in <= set(delegates[0]["inputs"])
        and set(delegates[0]["outputs"]) == model_out
    )
    return {"partitions": len(delegates), "whole_graph": whole, "model_nodes": len(nodes) - len(delegates)}


def _cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return {"n": len(cos), "min": float(cos.min()), "mean": float(cos.mean())}


def validate(
    float_path: Path,
    int8_path: Path,
    parity_chips: Chips,
    agreement_chips: Chips,
    jsref: Path,
    log=print,
    rebuild: Callable[[], tuple[Path, Path]] | None = None,
) -> dict:
    """Measure both models for the manifest; SystemExit when an acceptance line fails.

    jsref: the folder faceapi_js.install() prepared. rebuild: converts again into another folder (same
    inputs); both files must come out byte-identical.
    """
    parity_bgr, agree_bgr = load_chips(parity_chips), load_chips(agreement_chips)
    if len(parity_bgr) < PARITY_MIN_CHIPS or len(agree_bgr) < AGREEMENT_MIN_CHIPS:
        raise SystemExit(
            f"need >= {PARITY_MIN_CHIPS} parity and >= {AGREEMENT_MIN_CHIPS} agreement chips, "
            f"got {len(parity_bgr)} and {len(agree_bgr)}"
        )
    report: dict = {}

    log(f"  JS parity: face-api in node vs float TFLite on {len(parity_bgr)} chips")
    js = faceapi_js.descriptors(jsref, parity_bgr[..., ::-1], log=log)  # face-api takes RGB
    ours = describe(float_path, parity_bgr)
    parity = _cosine_stats(ours, js)
    parity["max_abs_diff"] = float(np.abs(ours - js).max())
    report["js_parity_cosine"] = parity
    log(f"  JS parity cosine min {parity['min']:.7f} mean {parity['mean']:.7f} (n={parity['n']})")
    if parity["min"] < PARITY_MIN_COSINE:
        raise SystemExit(f"float TFLite vs face-api cosine {parity['min']:.6f} < {PARITY_MIN_COSINE}")

    interp = interpreter(int8_path)
    scale, zero = interp.get_input_details()[0]["quantization"]
    if (float(scale), int(zero)) != INT8_INPUT_QUANTIZATION:
        raise SystemExit(f"int8 input quantization ({scale}, {zero}) != {INT8_INPUT_QUANTIZATION}")
    agree = _cosine_stats(describe(int8_path, agree_bgr), describe(float_path, agree_bgr))
    report["int8_vs_float_cosine"] = agree
    log(f"  int8 vs float cosine mean {agree['mean']:.5f} min {agree['min']:.5f} (n={agree['n']})")
    if agree["mean"] < AGREEMENT_MIN_MEAN:
        raise SystemExit(f"int8 vs float mean cosine {agree['mean']:.4f} < {AGREEMENT_MIN_MEAN}")

    report["xnnpack"] = {"int8": xnnpack_partitions(int8_path), "float": xnnpack_partitions(float_path)}
    log(f"  XNNPACK: int8 {report['xnnpack']['int8']}, float {report['xnnpack']['float']}")
    if not report["xnnpack"]["int8"]["whole_graph"]:
        raise SystemExit(f"int8 model is not one XNNPACK partition: {report['xnnpack']['int8']}")

    chip = agree_bgr[0]
    report["latency_ms_1thread"] = {
        "int8": latency_ms(int8_path, chip),
        "float": latency_ms(float_path, chip),
    }
    report["size_bytes"] = {"int8": int8_path.stat().st_size, "float": float_path.stat().st_size}
    report["sha256"] = {"int8": sha256_file(int8_path), "float": sha256_file(float_path)}
    report["int8_input_quantization"] = list(INT8_INPUT_QUANTIZATION)
    log(f"  latency (1 thread, median) {report['latency_ms_1thread']}, sizes {report['size_bytes']}")

    if rebuild is not None:
        again = rebuild()
        same = {
            k: sha256_file(p) == report["sha256"][k] for k, p in zip(("float", "int8"), again, strict=True)
        }
        report["deterministic"] = all(same.values())
        log(f"  rebuilt: identical sha256 {same}")
        if not report["deterministic"]:
            raise SystemExit(f"two conversions differ: {same}")
    return report


def main() -> int:
    """Stand-alone try-out: cd scripts && python -m modelbuild.faceapi --calib c.npy --parity p.npy ..."""
    import argparse
    import json

    from .fetch import FACE_API, converter_python, fetch

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument(
        "--cache", type=Path, default=Path(__file__).resolve().parents[2] / ".cache" / "modelbuild"
    )
    ap.add_argument("--calib", type=Path, required=True, help="(N,150,150,3) uint8 BGR calibration chips")
    ap.add_argument("--parity", type=Path, required=True, help=">= 10 BGR chips for the JS comparison")
    ap.add_argument("--agreement", type=Path, required=True, help=">= 200 BGR chips for int8 vs float")
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args()
    cache = args.cache.resolve()
    tgz, py = fetch(FACE_API, cache), converter_python(cache)
    work = cache / "work"
    float_path, int8_path = convert(py, tgz, work, args.calib)
    jsref = faceapi_js.install(tgz, cache / "jsref")
    report = validate(
        float_path,
        int8_path,
        args.parity,
        args.agreement,
        jsref,
        rebuild=lambda: convert(py, tgz, work / "rebuild", args.calib),
    )
    text = json.dumps(report, indent=2)
    if args.report:
        args.report.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
