"""`faceonly evaluate --plots DIR`: the evaluation's score distributions, with the shipped thresholds on them.

lfw_roc.png and lfw_scores.png (verification), identification_scores.png (open-set 1:N) and
liveness_scores.png (replay-risk score per attack type). Only scores are drawn, never an image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceonly_lab.plots.base import require_matplotlib

FAR_STYLES = {"far_1e-2": ":", "far_1e-3": "--", "far_1e-4": "-.", "far_1e-5": "-"}


def _far_label(key: str) -> str:
    return "FAR " + key.removeprefix("far_").replace("e-", "e-")


def lfw(scores: dict[str, Any], shipped: dict[str, float], folder: Path) -> list[Path]:
    """ROC of the LFW pairs and the cross-identity same/different histograms, shipped thresholds marked."""
    plt = require_matplotlib()
    genuine, impostor = np.asarray(scores["genuine"]), np.asarray(scores["impostor"])
    pair, same = np.asarray(scores["pair_scores"]), np.asarray(scores["pair_same"], bool)
    floor = 0.5 / len(impostor)  # FAR 0 has no place on a log axis: shown here, half a pair below the least
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for label, g, i in (
        (f"LFW view 2 pairs ({same.sum()} same, {(~same).sum()} different)", pair[same], pair[~same]),
        (f"every cross-identity pair ({len(genuine)} same, {len(impostor)} different)", genuine, impostor),
    ):
        thresholds = np.sort(np.unique(np.concatenate([g, i])))[::-1]
        far = np.searchsorted(np.sort(-i), -thresholds, side="right") / len(i)
        tar = np.searchsorted(np.sort(-g), -thresholds, side="right") / len(g)
        ax.plot(np.maximum(far, floor), tar, label=label)
    for key, t in shipped.items():
        far_at, tar_at = float(np.mean(impostor > t)), float(np.mean(genuine > t))
        # No different pair above it: the FAR is below what this set can show; drawn at the axis floor.
        shown = f"{_far_label(key)}: {t:.3f}" + ("" if far_at else f" (measured FAR < 1/{len(impostor)})")
        ax.plot(max(far_at, floor), tar_at, "ko", ms=4)
        ax.annotate(
            shown, (max(far_at, floor), tar_at), textcoords="offset points", xytext=(6, -10), fontsize=7
        )
    ax.set_xscale("log")
    ax.set_xlim(floor / 1.5, 1)
    ax.set_xlabel("false accept rate (log scale)")
    ax.set_ylabel("true accept rate")
    ax.set_title(
        "LFW verification ROC (left edge: FAR 0); dots: the shipped per-comparison thresholds", fontsize=9
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    roc = folder / "lfw_roc.png"
    fig.savefig(roc, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.linspace(min(genuine.min(), impostor.min()), 1.0, 120)
    # Densities, not counts: different pairs outnumber same ones thousands to one.
    ax.hist(impostor, bins, density=True, alpha=0.6, label=f"different people ({len(impostor)} pairs)")
    ax.hist(genuine, bins, density=True, alpha=0.6, label=f"same person ({len(genuine)} pairs)")
    for key, t in shipped.items():
        ax.axvline(
            t, color="k", ls=FAR_STYLES.get(key, "-"), lw=1, label=f"shipped {_far_label(key)}: {t:.3f}"
        )
    ax.set_yscale("log")
    ax.set_xlabel("cosine similarity of the two faces' embeddings")
    ax.set_ylabel("density (log scale)")
    ax.set_title("LFW cross-identity scores: same vs different people", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    hist = folder / "lfw_scores.png"
    fig.savefig(hist, dpi=110)
    plt.close(fig)
    return [roc, hist]


def identification(scores: dict[str, Any], folder: Path) -> Path:
    plt = require_matplotlib()
    known, unknown = np.asarray(scores["known"]), np.asarray(scores["unknown"])
    t = float(scores["threshold"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = np.concatenate([known, unknown])
    bins = np.linspace(values.min(), max(values.max(), t) + 0.005, 60) if len(values) else 10
    ax.hist(unknown, bins, alpha=0.6, label=f"unknown probes (not enrolled), n={len(unknown)}")
    ax.hist(
        known, bins, alpha=0.6, label=f"known probes (enrolled; best subject, right or wrong), n={len(known)}"
    )
    ax.axvline(
        t,
        color="k",
        lw=1.2,
        label=f"threshold for {scores['per_search']:g} false accepts per search: {t:.3f}",
    )
    ax.set_xlabel("best subject's score (cosine) for each probe")
    ax.set_ylabel("probes")
    ax.set_title(
        "open-set identification: a probe is matched only above the threshold (else unknown)", fontsize=10
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = folder / "identification_scores.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def liveness(scores: dict[str, Any], folder: Path) -> Path:
    plt = require_matplotlib()
    risks: dict[str, list[float]] = scores["risks"]
    t = float(scores["threshold"])
    kinds = sorted(risks, key=lambda k: (not k.startswith("bona fide"), k))
    fig, ax = plt.subplots(figsize=(8, max(3.5, 0.45 * len(kinds) + 1.8)))
    rng = np.random.default_rng(0)
    for y, kind in enumerate(kinds):
        values = np.asarray(risks[kind])
        colour = "C2" if kind.startswith("bona fide") else "C3"
        ax.scatter(values, y + rng.uniform(-0.18, 0.18, len(values)), s=12, color=colour, alpha=0.7)
        ax.plot([np.median(values)] * 2, [y - 0.3, y + 0.3], color="k", lw=1.5)
    ax.axvline(
        t, color="k", ls="--", lw=1, label=f"shipped replay-risk threshold {t:.2f} (at or above: flagged)"
    )
    ax.set_yticks(range(len(kinds)), [f"{k}, n={len(risks[k])}" for k in kinds], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("replay-risk score (0 looks live, 1 looks replayed); bar: median")
    ax.set_title(
        "passive replay cues per attack type (a soft score: the challenge is the barrier)", fontsize=10
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = folder / "liveness_scores.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
