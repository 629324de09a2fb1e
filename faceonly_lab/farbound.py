"""Upper confidence bounds of a false-accept rate (FAR), and the threshold curves read off them.

A threshold set where the measured share of impostors above it equals the target keeps that target only
about half the time on people it was not measured on: the measurement is a sample of people. Nor are the
impostor comparisons independent samples: the 7.26 million pairs of the 3,811 LFW images come from 2,086
people, and one person who resembles others (or has many photos) sits in thousands of them. Clopper-Pearson
on the pair count assumes independent pairs and comes out several times too narrow.

So the bound resamples PEOPLE, not pairs (the "subsets bootstrap" of Bolle, Ratha & Pankanti, Computer
Vision and Image Understanding, 2004): draw as many identities as there are, with replacement; a comparison between identities a and b then counts w_a * w_b times (w = how often each was
drawn; copies of one identity are never compared, a person is not their own impostor), and the draw's FAR
is its weighted share of comparisons above the threshold. The bound at a threshold is the BOUND_CONFIDENCE
quantile of the draws: a one-sided 95% upper confidence bound of the FAR over the population of people the
data samples. A curve point's threshold is the lowest at which that bound is at most the point's FAR.

Resampling identities also resamples every pair's own noise (for pairs, more than once: the pigeonhole
bootstrap overstates that part of the variance, Owen 2007), so the bound errs high rather than low: it lies
above Clopper-Pearson at every candidate threshold of the shipped LFW curves and on synthetic data
(tests/test_farbound.py). What it cannot cover is a population unlike the data's (other ages, ethnicities,
cameras than LFW's): that is for measurement on such data, not for a bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

BOUND_CONFIDENCE = 0.95
BOUND_REPLICATES = 1000
BOUND_SEED = 22  # fixed: the same embeddings always give the same curve
BOUND_NAME = "identity-level (subsets) bootstrap, one-sided 95%"
# Candidate thresholds for the bound: every count of impostors above from the smallest supported up to
# DENSE_COUNTS, then this many per decade of count (1.2% apart: finer than the curve's 20 points per decade).
DENSE_COUNTS = 400
CANDIDATES_PER_DECADE = 200


@dataclass(frozen=True)
class Impostors:
    """The impostor comparisons above a floor, sorted high to low, with the identities on both sides.

    `left` is the template side, `right` the probe side; `left_items[i]` / `right_items[i]` say how many
    templates / images identity i has on each side, which with `unordered` gives the number of impostor
    comparisons under any resampling of identities. `unordered`: one set of images compared with itself,
    each pair once.
    """

    scores: np.ndarray
    left: np.ndarray
    right: np.ndarray
    left_items: np.ndarray
    right_items: np.ndarray
    unordered: bool
    total: int

    def top(self, keep_far: float) -> Impostors:
        """The same comparisons with only the highest `keep_far` share kept (what a bound needs)."""
        keep = min(len(self.scores), max(1, int(np.ceil(keep_far * self.total))))
        return replace(self, scores=self.scores[:keep], left=self.left[:keep], right=self.right[:keep])

    def far_above(self, threshold: float) -> float:
        """The measured share of ALL impostor comparisons above `threshold`."""
        if len(self.scores) < self.total and len(self.scores) and threshold < self.scores[-1]:
            raise ValueError("the threshold is below the kept comparisons: keep more of them")
        return float(np.count_nonzero(self.scores > threshold)) / self.total

    def total_weight(self, w: np.ndarray) -> np.ndarray:
        """Impostor comparisons when identity i is drawn w[..., i] times (w=1: `total`)."""
        m, n = self.left_items, self.right_items
        cross = (w @ m) * (w @ n) - (w * w) @ (m * n)
        return cross / 2 if self.unordered else cross


def _kept(scores: np.ndarray, keep_far: float) -> np.ndarray:
    """Indices of the highest ceil(keep_far * len) scores (at least one), high to low."""
    keep = min(len(scores), max(1, int(np.ceil(keep_far * len(scores)))))
    top = np.argpartition(-scores, keep - 1)[:keep]
    return top[np.argsort(-scores[top], kind="stable")]


def _identity_index(identities: list[str]) -> tuple[np.ndarray, int]:
    ids = np.unique(np.asarray(identities), return_inverse=True)[1].astype(np.int32)
    return ids, int(ids.max()) + 1 if len(ids) else 0


def pair_impostors(embeddings: np.ndarray, identities: list[str], keep_far: float) -> Impostors:
    """Every cross-identity pair of the images (each once), the highest `keep_far` share kept."""
    x = np.asarray(embeddings, np.float32)
    if len(identities) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(identities)} identities")
    ids, n_ids = _identity_index(identities)
    i, j = np.triu_indices(len(x), 1)
    cross = ids[i] != ids[j]
    i, j = i[cross], j[cross]
    scores = (x @ x.T)[i, j]
    top = _kept(scores, keep_far)
    images = np.bincount(ids, minlength=n_ids).astype(np.float64)
    return Impostors(scores[top], ids[i[top]], ids[j[top]], images, images, True, len(scores))


def cross_impostors(
    left: np.ndarray, left_ids: np.ndarray, right: np.ndarray, right_ids: np.ndarray, keep_far: float
) -> Impostors:
    """Every left row (a template) against every right row (a probe) of another identity; `left_ids` and
    `right_ids` index one list of identities."""
    left_ids, right_ids = np.asarray(left_ids, np.int32), np.asarray(right_ids, np.int32)
    n_ids = int(max(left_ids.max(initial=-1), right_ids.max(initial=-1))) + 1
    scores = np.asarray(right, np.float32) @ np.asarray(left, np.float32).T  # (right, left)
    right_idx, left_idx = np.nonzero(right_ids[:, None] != left_ids[None, :])
    flat = scores[right_idx, left_idx]
    top = _kept(flat, keep_far)
    return Impostors(
        flat[top],
        left_ids[left_idx[top]],
        right_ids[right_idx[top]],
        np.bincount(left_ids, minlength=n_ids).astype(np.float64),
        np.bincount(right_ids, minlength=n_ids).astype(np.float64),
        False,
        len(flat),
    )


def resampled_fars(imp: Impostors, weights: np.ndarray, counts_above: np.ndarray) -> np.ndarray:
    """(rows of `weights`, len(counts_above)) FARs when identity i is drawn weights[r, i] times, at the
    thresholds that leave `counts_above` of the kept comparisons above (each count <= len(imp.scores))."""
    counts = np.asarray(counts_above, np.int64)
    if counts.size and (counts.min() < 0 or counts.max() > len(imp.scores)):
        raise ValueError("a count above is outside the kept comparisons")
    w = np.atleast_2d(np.asarray(weights, np.float64))
    totals = imp.total_weight(w)
    out = np.zeros((len(w), len(counts)))
    at = np.maximum(counts - 1, 0)
    for r in range(len(w)):
        if totals[r] <= 0:
            # A draw of people with no impostor comparison among them (a small set) says nothing about the
            # FAR: it counts as the worst case, so a bound never rests on what was not drawn.
            out[r] = 1.0
            continue
        cum = np.cumsum(w[r, imp.left] * w[r, imp.right])
        out[r] = np.where(counts > 0, cum[at], 0.0) / totals[r]
    return out


def bootstrap_fars(
    imp: Impostors, counts_above: np.ndarray, replicates: int = BOUND_REPLICATES, seed: int = BOUND_SEED
) -> np.ndarray:
    """`resampled_fars` of `replicates` draws of as many identities as there are, with replacement."""
    n_ids = len(imp.left_items)
    draws = np.random.default_rng(seed).multinomial(n_ids, np.full(n_ids, 1.0 / n_ids), size=replicates)
    return resampled_fars(imp, draws, counts_above)


def upper_bounds(imp: Impostors, counts_above: np.ndarray) -> np.ndarray:
    """The one-sided BOUND_CONFIDENCE upper bound of the FAR at each count's threshold."""
    fars = bootstrap_fars(imp, counts_above)
    return np.quantile(fars, BOUND_CONFIDENCE, axis=0, method="higher")


def _candidates(kept: int, smallest: int) -> np.ndarray:
    if kept <= smallest:
        return np.zeros(0, np.int64)
    decades = np.log10((kept - 1) / smallest)
    spread = np.geomspace(smallest, kept - 1, max(2, int(decades * CANDIDATES_PER_DECADE) + 1))
    dense = np.arange(smallest, min(DENSE_COUNTS, kept - 1) + 1)
    return np.unique(np.concatenate([dense, np.round(spread).astype(np.int64)]))


@dataclass(frozen=True)
class BoundTable:
    """Candidate thresholds (rising) with the FAR upper bound at each (falling) and the point FAR."""

    thresholds: np.ndarray
    bounds: np.ndarray
    point: np.ndarray

    def threshold(self, far: float) -> float | None:
        """The lowest candidate threshold whose bound is <= far; None below what the data supports."""
        ok = np.flatnonzero(self.bounds <= far)
        return float(self.thresholds[ok[0]]) if ok.size else None


def bound_table(imp: Impostors, smallest_count: int) -> BoundTable:
    """The bound at candidate thresholds from the one with `smallest_count` impostors above upwards in count
    (threshold = the score with exactly that many kept comparisons above it, ties aside: ties only lower the
    real count above, so the bound errs high)."""
    counts = _candidates(len(imp.scores), smallest_count)[::-1]  # most above (lowest threshold) first
    return BoundTable(
        imp.scores[counts].astype(np.float64), upper_bounds(imp, counts), counts / float(imp.total)
    )
