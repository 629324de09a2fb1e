"""`faceonly evaluate`: the vision numbers on any data in the supported formats, as a Markdown table (+ JSON).

--lfw PAIRS                 LFW pairs.txt or CSV fold,img1,img2,same: accuracy (thresholds on the other folds),
                            TAR at FAR 1e-2/1e-3, AUC, and per-comparison thresholds for FAR 1e-2..1e-5
                            (every cross-identity pair of the images; far_* at the 95% identity-bootstrap
                            upper bound of the FAR, as shipped; point_far_* at the measured share)
--detection-xml FILE        imglab boxes: recall and false faces
--negatives DIR             images without faces: false faces
--blink VIDEO --blink-events CSV      blinks matched within +-3 frames
--spoof-labels CSV --data-root DIR    APCER per attack type, BPCER, ACER of the replay-risk score
--identification CSV        open-set 1:N (path,subject,role): rank-1, known/unknown accept rates at the
                            threshold for --per-search (shipped curves for the template kind, or curves
                            made from --calibration CSV's images by the same recipe); whether the target
                            held, what the curves promise there and which confidence bound they use;
                            --templates mean|each
--pad MANIFEST              presentation-attack evaluation (ISO/IEC 30107-3): every listed clip or still under
                            --seeds seeds of the shipped challenge (+ robustness variants of the bona fide clips),
                            BPCER per camera/clip, APCER per attack type (worst case), failure reasons, tries;
                            --report FILE writes the Markdown report (format: faceonly_lab/pad/manifest.py);
                            a clip listed without motions has them proposed from its own traces
                            (--propose-motions: every clip, compared with the annotations)
--plots DIR                 PNGs: LFW ROC and same/different histograms with the shipped thresholds, known vs
                            unknown identification scores, replay-risk scores per attack type (plots extra)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from device.config.identity import IdentityConfig


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="measure detection, verification, blink and replay-cue accuracy")
    ev.add_argument("--lfw", type=Path, help="pairs.txt or CSV (fold,img1,img2,same)")
    ev.add_argument("--detection-xml", type=Path, help="imglab XML with face boxes")
    ev.add_argument("--negatives", type=Path, help="folder of images without faces")
    ev.add_argument("--blink", type=Path, help="video with annotated blinks")
    ev.add_argument(
        "--blink-events", type=Path, help="CSV video,event,approx_start_frame,approx_end_frame,..."
    )
    ev.add_argument("--spoof-labels", type=Path, help="CSV file,label,attack_type,media,...")
    ev.add_argument("--data-root", type=Path, help="folder the spoof CSV's paths are relative to")
    ev.add_argument("--identification", type=Path, help="CSV path,subject,role (gallery|probe)")
    ev.add_argument(
        "--embedder-runtime",
        choices=("litert", "onnxruntime"),
        default="litert",
        help="--lfw and --identification: what runs the embedder (as [vision] embedder_runtime)",
    )
    ev.add_argument(
        "--per-search",
        type=float,
        default=IdentityConfig().false_accept_per_search,
        help="false-accept target per search (default: the terminal's)",
    )
    ev.add_argument(
        "--templates",
        choices=("each", "mean"),
        default="mean",
        help="a subject's gallery photos as one mean template (as `faceonly gallery build` makes them; "
        "default) or each its own template (best of k)",
    )
    ev.add_argument(
        "--calibration",
        type=Path,
        help="CSV path,subject[,role] whose images set the threshold curves by the shipped recipe instead "
        "of the shipped ones (use identities disjoint from the evaluated ones)",
    )
    ev.add_argument("--pad", type=Path, help="PAD manifest (CSV: path,label,camera,person,split,motions,...)")
    ev.add_argument(
        "--seeds", type=int, default=10, help="--pad: seeds of the challenge per clip (default 10)"
    )
    ev.add_argument("--tries", type=int, default=2, help="--pad: walk-ups per person (default 2)")
    ev.add_argument("--no-variants", action="store_true", help="--pad: skip the robustness variants")
    ev.add_argument(
        "--config",
        type=Path,
        default=None,
        help="--pad: a terminal config (TOML, as `faceonly run --config`) whose [vision] settings are "
        "evaluated: the challenge's steps, retries and thresholds (default: the shipped ones)",
    )
    ev.add_argument(
        "--propose-motions",
        action="store_true",
        help="--pad: propose every video's motions from its traces (eye opening, head yaw), even where the "
        "manifest annotates them, and compare the two in the report (without it: only where the manifest "
        "has no motions column, or says auto)",
    )
    ev.add_argument(
        "--pad-cache",
        type=Path,
        default=None,
        help="--pad: folder for per-frame model outputs (default ~/.cache/faceonly/pad; landmarks only)",
    )
    ev.add_argument("--report", type=Path, help="--pad: write the Markdown report here")
    ev.add_argument("--models-dir", type=Path, default=None)
    ev.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    ev.add_argument("--plots", type=Path, help="write PNG plots of the scores here (needs the plots extra)")
    ev.set_defaults(func=_evaluate)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_evaluation(  # noqa: C901 - one branch per evaluation set the command offers
    args: argparse.Namespace, progress=_progress, scores: dict[str, dict] | None = None
) -> dict[str, Mapping[str, float | str]]:
    """The figures of every evaluation asked for; `scores`, when given, receives their raw scores (plots)."""
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector
    from faceonly_lab import vision_evaluation as ev

    if bool(args.blink) != bool(args.blink_events):
        raise ValueError("--blink and --blink-events go together")
    if args.spoof_labels and not args.data_root:
        raise ValueError("--spoof-labels needs --data-root")
    if not any(
        (args.lfw, args.detection_xml, args.negatives, args.blink, args.spoof_labels, args.identification)
    ):
        raise ValueError(
            "nothing to evaluate: give at least one of --lfw, --detection-xml, --negatives, --blink, "
            "--spoof-labels, --identification"
        )
    if args.calibration and not args.identification:
        raise ValueError("--calibration goes with --identification")
    if not 0.0 < args.per_search < 1.0:
        raise ValueError(f"--per-search must be in (0, 1), got {args.per_search}")
    from device.config.vision import VisionConfig

    store = ModelStore(args.models_dir)
    shipped = VisionConfig()
    detector = FaceDetector(store, shipped.detector, shipped.detector_min_score, shipped.nms_iou)
    results: dict[str, Mapping[str, float | str]] = {}
    if args.lfw:
        from device.vision.embed import Embedder, FaceEncoder
        from device.vision.landmarks import FaceMeshModel
        from faceonly_lab import lfw
        from faceonly_lab.thresholdcurves import curve_summary

        encoder = FaceEncoder(Embedder(store, runtime=args.embedder_runtime), FaceMeshModel(store))
        lfw_scores = None if scores is None else scores.setdefault("lfw", {})
        results["verification"], calibration = lfw.verification(
            lfw.read_pairs(args.lfw), detector, encoder, progress, lfw_scores
        )
        if lfw_scores is not None:
            lfw_scores["shipped"] = store.entry("embedder").info["thresholds"]["per_comparison"]
        results["thresholds"] = calibration.thresholds
        results["threshold_curve"] = curve_summary(calibration.curve)
        for k, points in calibration.mean_curves.items():
            results[f"threshold_curve_mean_of_{k}"] = curve_summary(points)
    if args.identification:
        id_scores = None if scores is None else scores.setdefault("identification", {})
        results["identification"] = _identification(args, store, detector, progress, id_scores)
    if args.detection_xml:
        results["detection"] = ev.detection(args.detection_xml, detector, progress)
    if args.negatives:
        results["negatives"] = ev.negatives(args.negatives, detector, progress)
    if args.blink:
        from device.vision.landmarks import FaceMeshModel, IrisModel

        progress("blink: running face mesh and iris over the video")
        results["blink"] = ev.blinks(
            args.blink, args.blink_events, detector, FaceMeshModel(store), IrisModel(store)
        )
    if args.spoof_labels:
        spoof_scores = None if scores is None else scores.setdefault("liveness", {})
        results["replay_cues"] = ev.spoof(args.spoof_labels, args.data_root, detector, progress, spoof_scores)
    return results


def _identification(
    args: argparse.Namespace, store, detector, progress, scores=None
) -> dict[str, float | str]:
    from device.identity.thresholds import CurveSet
    from device.vision.embed import Embedder, FaceEncoder
    from device.vision.landmarks import FaceMeshModel
    from faceonly_lab import identification as idev
    from faceonly_lab.farbound import BOUND_NAME

    embedder = Embedder(store, runtime=args.embedder_runtime)
    encoder = FaceEncoder(embedder, FaceMeshModel(store))
    rows = idev.read_identification_csv(args.identification)
    calib_rows = idev.read_identification_csv(args.calibration, any_role=True) if args.calibration else []
    paths = sorted({r.path for r in rows} | {r.path for r in calib_rows})
    embeddings = idev.embed_images(paths, detector, encoder, progress)
    if calib_rows:
        curves = idev.calibration_curves(calib_rows, embeddings)
    else:
        curves = CurveSet.from_manifest(store.entry("embedder").info)
    out: dict[str, float | str] = {
        **idev.identification(rows, embeddings, curves, args.per_search, args.templates, scores)
    }
    out["calibrated_on_other_set"] = float(bool(calib_rows))
    bound = (store.entry("embedder").info.get("thresholds") or {}).get("bound") or {}
    out["threshold_bound"] = (
        BOUND_NAME if calib_rows else str(bound.get("name", "none named in the manifest"))
    )
    return out


def markdown(results: Mapping[str, Mapping[str, float | str]]) -> str:
    lines = ["| set | measure | value |", "|---|---|---|"]
    for group, values in results.items():
        for name, value in values.items():
            if isinstance(value, str):
                shown = value
            else:
                shown = "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.5g}"
            lines.append(f"| {group} | {name} | {shown} |")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from device.contracts import SourceError
    from device.infra.modelstore import ModelError
    from device.vision.stills import ImageError

    if args.plots is not None:
        from faceonly_lab.plots.base import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"evaluate: {exc}", file=sys.stderr)
            return 2
    started = time.monotonic()
    if args.pad is not None:
        try:
            return _evaluate_pad(args, started)
        except (ValueError, OSError, ModelError, SourceError, ImageError) as exc:
            print(f"evaluate failed: {exc}", file=sys.stderr)
            return 1
    scores: dict[str, dict] | None = {} if args.plots is not None else None
    try:
        results = run_evaluation(args, scores=scores)
    except (ValueError, OSError, ModelError, SourceError, ImageError) as exc:
        print(f"evaluate failed: {exc}", file=sys.stderr)
        return 1
    print(markdown(results))
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"schema": 1, "results": results}, indent=2), encoding="utf-8")
    if scores:
        for path in _plots(scores, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _evaluate_pad(args: argparse.Namespace, started: float) -> int:
    import shlex

    from device.config import load_config
    from device.infra.modelstore import ModelStore
    from device.infra.paths import cache_root
    from faceonly_lab.pad.evaluate import PadOptions, evaluate_pad, summarise
    from faceonly_lab.pad.manifest import read_manifest
    from faceonly_lab.pad.report import markdown as pad_markdown

    if args.seeds < 1 or args.tries < 1:
        raise ValueError("--seeds and --tries must be at least 1")
    items = read_manifest(args.pad, args.data_root)
    missing = [str(i.path) for i in items if not i.path.exists()]
    if missing:
        raise ValueError(f"{len(missing)} manifest file(s) missing, first: {missing[0]}")
    cache = args.pad_cache if args.pad_cache is not None else cache_root() / "pad"
    vision = load_config(args.config).vision if args.config is not None else None
    options = PadOptions(args.seeds, args.tries, not args.no_variants, args.propose_motions, vision)
    result = evaluate_pad(items, ModelStore(args.models_dir), options, cache, _progress)
    summary = summarise(result)
    command = (
        "faceonly " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "faceonly evaluate"
    )
    report = pad_markdown(result, summary, command)
    print(report)
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report, encoding="utf-8")
    if args.json:
        payload = {"schema": 1, "pad": {"summary": summary, **result}}
        args.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    if args.plots is not None:
        from faceonly_lab.plots.pad import pad_plots

        for path in pad_plots(summary, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _plots(scores: dict[str, dict], folder: Path) -> list[Path]:
    from faceonly_lab.plots import evaluation as evalplots

    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    if "lfw" in scores:
        out += evalplots.lfw(scores["lfw"], scores["lfw"]["shipped"], folder)
    if "identification" in scores:
        out.append(evalplots.identification(scores["identification"], folder))
    if scores.get("liveness", {}).get("risks"):
        out.append(evalplots.liveness(scores["liveness"], folder))
    return out
