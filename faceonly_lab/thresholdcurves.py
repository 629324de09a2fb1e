"""The shipped threshold recipe: per-comparison false-accept rate (FAR) -> cosine threshold, conservatively.

Impostors are every cross-identity pair of a set of face images (single-photo templates) and every mean-of-k
template (disjoint runs of k of an identity's images, in the order given) against every image of another
identity (k = 2..5: what `faceonly gallery build` makes). A curve point (far, threshold) promises that the
FAR at that threshold is at most `far` with 95% confidence over the population of people the images sample:
the threshold is the lowest at which the identity-level bootstrap bound of the FAR (faceonly_lab.farbound)
is <= far, not the one where the measured share is. Curves run from CURVE_TOP_FAR down, CURVE_POINTS_PER_DECADE
points per decade, to the bound at the threshold that leaves MIN_IMPOSTORS_ABOVE impostors above (below
that nothing is measured); the terminal clamps there and says so.

The point-estimate thresholds (the measured share of impostors above = the target) are kept beside the
bound for reference: they are what the pre-bound curves were made of, and what a held-out check compares to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceonly_lab import farbound

FAR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5)
# A FAR is supported only down to the bound at the threshold with this many impostor scores above it.
MIN_IMPOSTORS_ABOVE = 10
CURVE_TOP_FAR = 1e-1
CURVE_POINTS_PER_DECADE = 20
# Mean templates the shipped curves cover (device.identity.gallery.MAX_AVERAGED is the largest).
MEAN_TEMPLATE_PHOTOS = (2, 3, 4, 5)

Curve = list[tuple[float, float]]


def far_key(far: float) -> str:
    """1e-3 -> "far_1e-3" (the key of a threshold in results and in the manifest)."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"far_{mantissa}e{int(exponent)}"


def _curve_fars(smallest: float, top_far: float, per_decade: int) -> list[float]:
    """Log-even FARs to 4 significant digits (as the manifest stores them: 1e-2 is exactly 0.01), then
    `smallest` itself."""
    steps = int(np.floor(np.log10(top_far / smallest) * per_decade + 1e-9))
    fars = [float(f"{top_far * 10 ** (-k / per_decade):.4g}") for k in range(steps + 1)]
    fars = [f for f in fars if f >= smallest]
    if fars[-1] > smallest * (1 + 1e-9):
        fars.append(smallest)
    return fars


def threshold_curve(
    imp: farbound.Impostors, top_far: float = CURVE_TOP_FAR, per_decade: int = CURVE_POINTS_PER_DECADE
) -> Curve:
    """[(far, threshold)]: far falling log-evenly from `top_far` to the smallest bound the data supports
    (that end point included), each threshold the lowest whose FAR upper bound is <= far; thresholds never
    fall as far falls. Empty when the data cannot bound even `top_far`."""
    return curve_from_table(farbound.bound_table(imp, MIN_IMPOSTORS_ABOVE), top_far, per_decade)


def curve_from_table(
    table: farbound.BoundTable, top_far: float = CURVE_TOP_FAR, per_decade: int = CURVE_POINTS_PER_DECADE
) -> Curve:
    if not len(table.bounds) or table.bounds[-1] > top_far or table.bounds[-1] <= 0:
        return []
    out: Curve = []
    for far in _curve_fars(float(table.bounds[-1]), top_far, per_decade):
        threshold = table.threshold(far * (1 + 1e-12))  # the end point is the smallest bound itself
        if threshold is None:  # cannot happen above the smallest bound; never guess
            break
        out.append((float(far), max(threshold, out[-1][1]) if out else threshold))
    return out if len(out) >= 2 else []


def point_estimate_curve(
    impostor: np.ndarray, top_far: float = CURVE_TOP_FAR, per_decade: int = CURVE_POINTS_PER_DECADE
) -> Curve:
    """The pre-bound recipe, for comparison: thresholds where the measured share of impostors above is the
    far, from `top_far` to MIN_IMPOSTORS_ABOVE impostors above."""
    imp = np.sort(np.asarray(impostor, np.float64))[::-1]
    smallest = MIN_IMPOSTORS_ABOVE / len(imp) if len(imp) else np.inf
    if smallest > top_far:
        return []
    fars = _curve_fars(smallest, top_far, per_decade)
    thresholds = np.maximum.accumulate(
        [float(imp[min(int(np.floor(f * len(imp) + 1e-9)), len(imp) - 1)]) for f in fars]
    )
    return [(float(f), float(t)) for f, t in zip(fars, thresholds, strict=True)]


def curve_summary(curve: Curve) -> dict[str, float]:
    """What a threshold curve covers, as plain numbers (the table and JSON of `faceonly evaluate`)."""
    if not curve:
        return {"curve_points": 0.0}
    return {
        "curve_points": float(len(curve)),
        "curve_top_far": curve[0][0],
        "curve_smallest_far": curve[-1][0],
        "curve_threshold_at_smallest_far": curve[-1][1],
    }


def mean_templates(
    embeddings: np.ndarray, identities: list[str], averaged: int
) -> tuple[np.ndarray, np.ndarray]:
    """(templates, owner index into the sorted identities): every disjoint run of `averaged` of an
    identity's images, in the order given, averaged and L2-normalised."""
    x = np.asarray(embeddings, np.float32)
    if len(identities) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(identities)} identities")
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    templates, owners = [], []
    for identity in range(int(ids.max()) + 1 if len(ids) else 0):
        rows = np.flatnonzero(ids == identity)
        for start in range(0, len(rows) - averaged + 1, averaged):
            mean = x[rows[start : start + averaged]].mean(axis=0)
            templates.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            owners.append(identity)
    if not templates:
        return np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int32)
    return np.stack(templates).astype(np.float32), np.asarray(owners, np.int32)


def mean_template_impostors(
    embeddings: np.ndarray,
    identities: list[str],
    averaged: int,
    keep_far: float = CURVE_TOP_FAR,
    probes: np.ndarray | None = None,
) -> farbound.Impostors:
    """Every mean-of-`averaged` template against every image of another identity (the top `keep_far`); the
    images as `probes` when given (their single views), else as themselves."""
    templates, owners = mean_templates(embeddings, identities, averaged)
    images = np.unique(np.asarray(identities), return_inverse=True)[1]
    right = embeddings if probes is None else probes
    return farbound.cross_impostors(templates, owners, right, images, keep_far)


def mean_template_curves(
    embeddings: np.ndarray,
    identities: list[str],
    counts: tuple[int, ...] = MEAN_TEMPLATE_PHOTOS,
    probes: np.ndarray | None = None,
) -> dict[int, Curve]:
    """{photos per template: bound curve} for mean templates (counts the data cannot support are absent).
    `probes`: each image's probe embedding when it differs from its template embedding (single-view probes
    against flip-averaged templates); by default the images' own embeddings."""
    curves = {}
    for k in counts:
        imp = mean_template_impostors(embeddings, identities, k, probes=probes)
        if len(imp.scores):
            curves[k] = threshold_curve(imp)
    return {k: c for k, c in curves.items() if len(c) >= 2}


def single_view_impostors(
    templates: np.ndarray, probes: np.ndarray, identities: list[str], keep_far: float = CURVE_TOP_FAR
) -> farbound.Impostors:
    """Every image's single-view probe against every other identity's image as a (flip-averaged) template:
    ordered, both ways (a probe and a template are not the same kind of embedding)."""
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    return farbound.cross_impostors(templates, ids, probes, ids, keep_far)


@dataclass(frozen=True)
class Calibration:
    """Everything the shipped recipe makes from one set of embeddings. The `single_*` family is for
    single-view probes (the chip alone, no mirror) against the same flip-averaged templates; empty when the
    set has no single views."""

    curve: Curve  # single photos, bound
    mean_curves: dict[int, Curve]  # mean templates, bound
    thresholds: dict[str, float]  # per FAR target: bound and point-estimate thresholds, genuine accept
    single_curve: Curve = field(default_factory=list)
    single_mean_curves: dict[int, Curve] = field(default_factory=dict)
    single_thresholds: dict[str, float] = field(default_factory=dict)


def calibrate(
    embeddings: np.ndarray,
    identities: list[str],
    targets: tuple[float, ...] = FAR_TARGETS,
    singles: np.ndarray | None = None,
) -> Calibration:
    """The shipped recipe on a set of face embeddings (identity = label): the curves, and for each FAR
    target the bound threshold (`far_1e-3`, what the curve gives), the genuine acceptance there
    (`tar_at_far_1e-3`, every same-identity pair), and the point-estimate threshold (`point_far_1e-3`).
    Targets below the smallest bound the data supports are left out; their absence is the answer.
    `singles` (each image's single-view embedding, same order): the same for single-view probes against
    the images' flip-averaged embeddings as templates."""
    x = np.asarray(embeddings, np.float32)
    imp = farbound.pair_impostors(x, identities, CURVE_TOP_FAR)
    table = farbound.bound_table(imp, MIN_IMPOSTORS_ABOVE)
    genuine = same_identity_scores(x, identities)
    thresholds = _targets(table, imp, genuine, targets)
    if singles is None:
        return Calibration(curve_from_table(table), mean_template_curves(x, identities), thresholds)
    s = np.asarray(singles, np.float32)
    if s.shape != x.shape:
        raise ValueError(f"{len(s)} single views for {len(x)} embeddings")
    simp = single_view_impostors(x, s, identities)
    stable = farbound.bound_table(simp, MIN_IMPOSTORS_ABOVE)
    return Calibration(
        curve_from_table(table),
        mean_template_curves(x, identities),
        thresholds,
        curve_from_table(stable),
        mean_template_curves(x, identities, probes=s),
        _targets(stable, simp, same_identity_scores(x, identities, probes=s), targets),
    )


def _targets(
    table: farbound.BoundTable, imp: farbound.Impostors, genuine: np.ndarray, targets: tuple[float, ...]
) -> dict[str, float]:
    out: dict[str, float] = {"impostor_pairs": float(imp.total), "genuine_pairs": float(len(genuine))}
    for far in targets:
        bound = table.threshold(far) if len(table.bounds) else None
        point_count = int(np.floor(far * imp.total))
        if bound is None or point_count >= len(imp.scores):
            continue
        out[far_key(far)] = bound
        out[f"tar_at_{far_key(far)}"] = float(np.mean(genuine > bound))
        out[f"point_{far_key(far)}"] = float(imp.scores[point_count])
    return out


def same_identity_scores(
    embeddings: np.ndarray, identities: list[str], probes: np.ndarray | None = None
) -> np.ndarray:
    """Cosine of every same-identity pair (each once; with `probes`, every ordered pair of a probe and
    another image of the same identity as the template)."""
    x = np.asarray(embeddings, np.float32)
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    out = []
    for identity in range(int(ids.max()) + 1 if len(ids) else 0):
        rows = x[ids == identity]
        if probes is None:
            i, j = np.triu_indices(len(rows), 1)
            out.append((rows @ rows.T)[i, j])
        else:
            p = np.asarray(probes, np.float32)[ids == identity]
            scores = p @ rows.T
            out.append(scores[~np.eye(len(rows), dtype=bool)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)
