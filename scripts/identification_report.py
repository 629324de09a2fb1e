#!/usr/bin/env python3
"""Do the shipped threshold curves keep their promise on people they were not fitted on? LFW folds 1-5 through
the terminal's own path, and open-set identification at those curves.

    python scripts/identification_report.py --pairs ../shared/data/verification/lfw/pairs_view2_local.csv \
        --work /tmp/ident [--deepface ../shared/data/verification/deepface] [--halvings 20] [--json OUT]

Split: the identities of LFW folds 1-5, sorted by name, alternate into halves "a" and "b"
(faceonly_lab.lfwsets). Curves are made from one half's images by the shipped recipe (the 95% identity-
bootstrap upper bound of the FAR, faceonly_lab.thresholdcurves) and measured on the other half ("a->b":
fitted on a, measured on b). "point" rows use the recipe the terminal used before (the measured share of
impostors = the target), for comparison.
1. Per comparison: the FAR measured on the other half at each curve's threshold for a target, for single
   photos (every cross-identity pair) and mean-of-k templates (every template against every image of another
   identity).
2. Per search: galleries (a) G=1 photo per identity with >= 2, (b) G=3 with >= 4 (first photos by file
   name; the other photos are known probes, identities with fewer photos are strangers); templates made as
   `faceonly gallery build` makes them. Strangers accepted with a Clopper-Pearson 95% interval, and what the
   curves promise at the threshold in force (the target, or more when clamped). "shipped": the curves in
   models/manifest.json (fitted on all of folds 1-5, evaluated identities included: optimistic); "oracle":
   the threshold set on the evaluated strangers themselves for 1% (the identity issue's reference protocol).
3. Per search at gallery sizes 10, 30, 100: galleries drawn at random from the held-out half (single photos:
   first photo; mean of 3: first 3 photos), every held-out image a stranger to every gallery without its
   own identity; the exact average over galleries, with a 95% interval from resampling the strangers'
   identities.
4. --deepface DIR: non-LFW faces (identities_derived.csv), per-comparison FAR at curves made by the recipe from
   LFW folds 1-5 without the identities that share a name with them.
5. --halvings N: N seeded random identity halvings of folds 1-5: how often the FAR on the held-out half
   exceeded the target, bound vs point.
CSVs and the embedding caches go to --work, never into the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.identity.thresholds import CurveSet, ThresholdCurve
from faceonly_lab import farbound
from faceonly_lab import identification as idev
from faceonly_lab import thresholdcurves as tc
from faceonly_lab.lfwsets import write_identification_csv

PER_SEARCH = (1e-2, 1e-3)
GALLERY_SIZES = (10, 30, 100)
KINDS = (1, *tc.MEAN_TEMPLATE_PHOTOS)
TARGETS = tc.FAR_TARGETS
RECIPES = ("bound", "point")


def _embeddings(paths: list[Path], cache: Path) -> dict[Path, np.ndarray]:
    """The central face's embedding of each image through the terminal's own path, cached in `cache`."""
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return {Path(p): e for p, e in zip(data["paths"], data["embeddings"], strict=True)}
    from device.config.vision import VisionConfig
    from device.infra.modelstore import ModelStore
    from device.vision.detect import FaceDetector
    from device.vision.embed import Embedder, FaceEncoder
    from device.vision.landmarks import FaceMeshModel

    store, vision = ModelStore(), VisionConfig()
    detector = FaceDetector(store, vision.detector, vision.detector_min_score, vision.nms_iou)
    encoder = FaceEncoder(Embedder(store), FaceMeshModel(store))
    emb = idev.embed_images(sorted(paths), detector, encoder, lambda m: print(m, file=sys.stderr, flush=True))
    found = sorted(emb)
    np.savez(cache, paths=np.array([str(p) for p in found]), embeddings=np.stack([emb[p] for p in found]))
    return emb


def impostors(x: np.ndarray, ids: list[str], kind: int) -> farbound.Impostors:
    """Every impostor comparison of a template kind (1: image pairs; k: mean-of-k templates vs images)."""
    if kind == 1:
        return farbound.pair_impostors(x, ids, 1.0)
    return tc.mean_template_impostors(x, ids, kind, keep_far=1.0)


def curves(imp: farbound.Impostors) -> dict[str, ThresholdCurve | None]:
    """The bound curve (shipped recipe) and the point-estimate curve (the recipe before) of one set."""
    out: dict[str, ThresholdCurve | None] = {}
    for recipe, points in (
        ("bound", tc.threshold_curve(imp.top(tc.CURVE_TOP_FAR))),
        ("point", tc.point_estimate_curve(imp.scores)),
    ):
        out[recipe] = ThresholdCurve.from_points(points) if len(points) >= 2 else None
    return out


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def per_comparison(fitted: dict, measured: dict, split: str) -> list[dict]:
    rows = []
    for kind in KINDS:
        if kind not in fitted or kind not in measured:
            continue
        for recipe in RECIPES:
            curve = fitted[kind][recipe]
            if curve is None:
                continue
            for far in TARGETS:
                threshold, clamped = curve.threshold(far)
                held_out = measured[kind].far_above(threshold)
                promised = curve.far_bound(threshold)
                rows.append(
                    {
                        "split": split,
                        "templates": "single photo" if kind == 1 else f"mean of {kind}",
                        "recipe": recipe,
                        "target": far,
                        "threshold": round(threshold, 5),
                        "clamped": clamped,
                        "promised": promised,
                        "held_out_far": held_out,
                        "over_target": held_out / far,
                        "held_out_comparisons": measured[kind].total,
                        "held": held_out <= promised,
                    }
                )
    return rows


def _half_arrays(rows: list[idev.Row], emb: dict) -> tuple[np.ndarray, list[str]]:
    found = [r for r in rows if r.path in emb]
    return np.stack([emb[r.path] for r in found]), [r.subject for r in found]


def _search_row(fig: dict, target: float | None, **labels) -> dict:
    k, n = int(fig["unknown_accepted"]), int(fig["unknown_probes"])
    lo, hi = clopper_pearson(k, n)
    return {
        **labels,
        "rank1": fig["rank1"],
        "known_accept_rate": fig["known_accept_rate"],
        "strangers_accepted": f"{k}/{n}",
        "unknown_accept_rate": k / n,
        "ci95": f"{lo:.4f}..{hi:.4f}",
        "promised": fig["promised_per_search_far"],
        "threshold": round(fig["threshold"], 4),
        "clamped": bool(fig["threshold_clamped"]),
        "held": "" if target is None else k / n <= fig["promised_per_search_far"],
        "target_met": "" if target is None else k / n <= target,
        "gallery_templates": int(fig["gallery_templates"]),
    }


def _oracle(rows, emb, mode, unknown_rate: float = 0.01) -> dict:
    """The issue's reference protocol: threshold fitted on the evaluated unknowns (optimistic)."""
    matcher, averaged = idev.build_matcher(
        [(r.subject, emb[r.path]) for r in rows if r.role == "gallery" and r.path in emb], mode
    )
    unknown = [
        r for r in rows if r.role == "probe" and r.subject not in set(matcher.subjects) and r.path in emb
    ]
    top = matcher.subject_scores_many(np.stack([emb[r.path] for r in unknown])).max(axis=1)
    threshold = float(np.sort(top)[::-1][int(np.floor(unknown_rate * len(top)))])
    curve = ThresholdCurve.from_points([[0.5, threshold], [1e-9, threshold]])
    return idev.identification(rows, emb, CurveSet.single(curve, sorted(averaged)), 0.5, mode)


def per_search(rows: dict, emb: dict, fitted: dict) -> list[dict]:
    from device.infra.modelstore import ModelStore

    sets = {
        h: {r: CurveSet({k: c[r] for k, c in fitted[h].items() if c[r] is not None}) for r in RECIPES}
        for h in fitted
    }
    shipped = CurveSet.from_manifest(ModelStore().entry("embedder").info)
    out = []
    for g, name in ((1, "a"), (3, "b")):
        for mode in ("each", "mean") if g > 1 else ("each",):
            for ps in PER_SEARCH:
                labels = {"gallery": name, "templates": mode, "per_search": ps}
                for recipe in RECIPES:
                    for split, fit, measured in (("a->b", "a", "b"), ("b->a", "b", "a")):
                        fig = idev.identification(rows[g, measured], emb, sets[fit][recipe], ps, mode)
                        out.append(_search_row(fig, ps, **labels, split=split, recipe=recipe))
                fig = idev.identification(rows[g, "all"], emb, shipped, ps, mode)
                out.append(_search_row(fig, ps, **labels, split="shipped", recipe="bound"))
            oracle = _oracle(rows[g, "all"], emb, mode)
            labels = {"gallery": name, "templates": mode, "per_search": "1% unknown"}
            out.append(_search_row(oracle, None, **labels, split="oracle", recipe="oracle"))
    return out


def random_galleries(fitted: dict, arrays: dict) -> list[dict]:
    from device.identity.thresholds import operating_point

    rows = []
    for kind in (1, 3):
        for subjects in GALLERY_SIZES:
            for ps in PER_SEARCH:
                for split, fit, measured in (("a->b", "a", "b"), ("b->a", "b", "a")):
                    curve = fitted[fit][kind]["bound"]
                    point = operating_point(curve, ps, subjects)
                    x, ids = arrays[measured]
                    found = idev.random_gallery_search(x, ids, kind, point.threshold, subjects)
                    lo, hi = found.interval
                    rows.append(
                        {
                            "templates": "single photo" if kind == 1 else f"mean of {kind}",
                            "gallery": subjects,
                            "per_search": ps,
                            "split": split,
                            "threshold": round(point.threshold, 5),
                            "clamped": point.clamped,
                            "promised": point.promised_per_search_far,
                            "held_out_per_search": found.rate,
                            "ci95": f"{lo:.5f}..{hi:.5f}",
                            "strangers": found.strangers,
                            "held": found.rate <= point.promised_per_search_far,
                            "target_met": found.rate <= ps,
                        }
                    )
    return rows


def deepface(folder: Path, lfw_x: np.ndarray, lfw_ids: list[str], work: Path) -> list[dict]:
    """Per-comparison FAR on non-LFW faces at curves fitted on LFW without the same-named identities."""
    with open(folder / "identities_derived.csv", newline="", encoding="utf-8") as fh:
        labels = {r["file"]: r for r in csv.DictReader(fh)}
    emb = _embeddings([folder / f for f in labels], work / "deepface_embeddings.npz")
    found = sorted(p for p in emb if p.name in labels)
    x = np.stack([emb[p] for p in found])
    ids = [labels[p.name]["identity_id"] for p in found]
    names = {labels[p.name]["identity_name_visual_guess"].replace(" ", "_") for p in found}
    keep = [i for i, name in enumerate(lfw_ids) if name not in names]
    print(
        f"deepface: {len(found)} images of {len(set(ids))} identities; left out of LFW: "
        f"{sorted(names & set(lfw_ids))}",
        file=sys.stderr,
    )
    fitted_x, fitted_ids = lfw_x[keep], [lfw_ids[i] for i in keep]
    out = []
    for kind in (1, 2, 3):
        measured = impostors(x, ids, kind)
        fitted = curves(impostors(fitted_x, fitted_ids, kind))
        for recipe in RECIPES:
            curve = fitted[recipe]
            for far in (1e-1, 1e-2):
                if curve is None or far * measured.total < 10:
                    continue
                threshold = curve.threshold(far)[0]
                k = int(np.count_nonzero(measured.scores > threshold))
                lo, hi = clopper_pearson(k, measured.total)
                out.append(
                    {
                        "templates": "single photo" if kind == 1 else f"mean of {kind}",
                        "recipe": recipe,
                        "target": far,
                        "threshold": round(threshold, 5),
                        "accepted": f"{k}/{measured.total}",
                        "held_out_far": k / measured.total,
                        "ci95": f"{lo:.4f}..{hi:.4f}",
                        "held": k / measured.total <= far,
                    }
                )
    return out


def halvings(x: np.ndarray, ids: list[str], n: int) -> list[dict]:
    """Held-out exceedances over `n` seeded random identity halvings (single photos and mean of 3)."""
    names = np.array(sorted(set(ids)))
    labels = np.asarray(ids)
    counts: dict[tuple, list[float]] = {}
    for seed in range(n):
        first = set(np.random.default_rng(1000 + seed).permutation(names)[: len(names) // 2])
        side = np.array([name in first for name in labels])
        for kind in (1, 3):
            fitted = curves(impostors(x[side], list(labels[side]), kind))
            measured = impostors(x[~side], list(labels[~side]), kind)
            for recipe in RECIPES:
                curve = fitted[recipe]
                for far in TARGETS:
                    if curve is None or curve.threshold(far)[1]:
                        continue
                    ratio = measured.far_above(curve.threshold(far)[0]) / far
                    counts.setdefault((kind, recipe, far), []).append(ratio)
        print(f"halving {seed + 1}/{n}", file=sys.stderr, flush=True)
    return [
        {
            "templates": "single photo" if kind == 1 else f"mean of {kind}",
            "recipe": recipe,
            "target": far,
            "halvings_not_clamped": len(r),
            "exceeded": int(np.sum(np.asarray(r) > 1.0)),
            "worst_ratio": float(np.max(r)),
            "median_ratio": float(np.median(r)),
        }
        for (kind, recipe, far), r in sorted(counts.items())
    ]


def table(title: str, rows: list[dict]) -> str:
    if not rows:
        return f"## {title}\n\n(nothing)\n"
    cols = list(rows[0])
    lines = [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--deepface", type=Path, help="../shared/data/verification/deepface: a non-LFW check")
    ap.add_argument("--halvings", type=int, default=0, help="random identity halvings to count exceedances")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    csvs = {}
    for g in (1, 3):
        for half in ("all", "a", "b"):
            csvs[g, half] = args.work / f"lfw_g{g}_{half}.csv"
            write_identification_csv(args.pairs, csvs[g, half], g, half)
    rows = {k: idev.read_identification_csv(v) for k, v in csvs.items()}
    emb = _embeddings(sorted({r.path for r in rows[1, "all"]}), args.work / "lfw_embeddings.npz")
    arrays = {h: _half_arrays(rows[1, h], emb) for h in ("a", "b", "all")}
    print("threshold curves of each half (bound and point)", file=sys.stderr, flush=True)
    measured = {h: {k: impostors(*arrays[h], k) for k in KINDS} for h in ("a", "b")}
    fitted = {h: {k: curves(imp) for k, imp in measured[h].items() if imp.total} for h in ("a", "b")}
    report = {
        "bound": farbound.BOUND_NAME,
        "per_comparison": per_comparison(fitted["a"], measured["b"], "a->b")
        + per_comparison(fitted["b"], measured["a"], "b->a"),
        "per_search": per_search(rows, emb, fitted),
        "random_galleries": random_galleries(fitted, arrays),
    }
    if args.deepface:
        report["deepface"] = deepface(args.deepface, *arrays["all"], args.work)
    if args.halvings:
        report["halvings"] = halvings(*arrays["all"], args.halvings)
    print(f"Curves: {report['bound']} (bound) vs the measured share (point).\n")
    titles = {
        "per_comparison": "Per comparison: FAR on the held-out half at each curve's threshold",
        "per_search": "Per search: strangers accepted on the held-out half",
        "random_galleries": "Per search at a gallery size: random galleries of the held-out half",
        "deepface": "Per comparison on non-LFW faces (deepface), curves from LFW without those names",
        "halvings": "Random identity halvings: held-out FAR over target",
    }
    for key, title in titles.items():
        if key in report:
            print(table(title, report[key]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
