"""`faceonly bench --plots DIR`: where the time goes per frame, and how it scales next to the peer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceonly_lab.bench.report import STAGE_ORDER
from faceonly_lab.plots.base import require_matplotlib


def _per_frame(stages: dict[str, Any], frames: int) -> dict[str, float]:
    """Each stage's mean contribution to one frame (a stage that runs on some frames only counts less)."""
    return {s: stages[s]["mean"] * stages[s]["n"] / frames for s in STAGE_ORDER if s in stages and frames}


def stage_breakdown(report: dict[str, Any], path: Path) -> Path:
    plt = require_matplotlib()
    rows = [
        ("steady face, 720p\n(challenge pending)", report["steady"]),
        ("idle, 720p\n(no face)", report["idle"]),
    ]
    rows += [(f"replay {r['source'].rsplit('/', 1)[-1]}\n(all frames)", r) for r in report["replays"]]
    fig, ax = plt.subplots(figsize=(11, 1.1 * len(rows) + 2.4))
    from matplotlib.patches import Patch

    colours = dict(zip(STAGE_ORDER, plt.get_cmap("tab20").colors, strict=False))
    seen: list[str] = []
    for y, (_, part) in enumerate(rows):
        left = 0.0
        for stage, ms in _per_frame(part["stages"], part["frames"]).items():
            ax.barh(y, ms, left=left, color=colours[stage], edgecolor="white", linewidth=0.5)
            left += ms
            seen += [stage] if stage not in seen else []
        face_work = part.get("face_frames", part["frames"])  # replays: the share is over face frames
        note = f"{part['outside_inference_share']:.0%} outside models" if face_work else "no face frames"
        ax.text(left, y, f" {left:.1f} ms\n {note}", va="center", fontsize=8)
    order = [s for s in STAGE_ORDER if s in seen]
    fig.legend(
        [Patch(color=colours[s]) for s in order], order, ncol=min(len(order), 6), fontsize=8,
        loc="lower center", title="stage", title_fontsize=8,
    )  # fmt: skip
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=9)
    ax.invert_yaxis()
    m = report["machine"]
    ax.set_xlabel(
        "mean ms per frame by stage, over all frames of the pass\n(landmarks = face mesh + iris + replay "
        "cues; for replays the outside-models share is over the frames with face work)",
        fontsize=8,
    )
    ax.set_title(
        f"faceonly: where a frame's time goes ({m['threads']} thread, {m['cpu']}, load {m['load_avg_1m']})"
    )
    ax.margins(x=0.18)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling(report: dict[str, Any], path: Path) -> Path:
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    panels = (
        ("faces", "faces in a 720p frame", [r["faces"] for r in report["scaling"]["faces"]]),
        ("resolution", "frame size (one face)", [r["resolution"] for r in report["scaling"]["resolution"]]),
    )
    for ax, (axis, xlabel, xs) in zip(axes, panels, strict=True):
        rows = report["scaling"][axis]
        pos = list(range(len(rows)))
        ours = [r["frame_ms"]["p50"] for r in rows]
        ax.plot(pos, ours, "o-", label="faceonly (detect + mesh + iris, challenge pending)")
        if all("peer" in r for r in rows):
            peer = [r["peer"]["frame_ms"]["p50"] for r in rows]
            ax.plot(pos, peer, "s-", label="face_recognition (HOG + encodings)")
            for x, r in zip(pos, rows, strict=True):
                ax.annotate(
                    f"{r['ratio']['frame_p50']:.0f}x",
                    (x, r["peer"]["frame_ms"]["p50"]),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                )
        for x, r in zip(pos, rows, strict=True):
            if r["faces_detected"] != r["faces"]:  # say it where it happens: fewer faces means less work
                ax.annotate(
                    f"found {r['faces_detected']}/{r['faces']}",
                    (x, r["frame_ms"]["p50"]),
                    textcoords="offset points",
                    xytext=(0, -14),
                    ha="center",
                    fontsize=8,
                    color="C3",
                )
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low / 1.6, high * 1.8)  # room for the labels above and below the points
        ax.set_xticks(pos, [str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms per frame, p50 (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="center right")
    fig.suptitle(
        f"per-frame cost as the scene grows, {report['machine']['threads']} thread, the same frames for both "
        f"(labels: peer time / our time; load {report['machine']['load_avg_1m']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = [stage_breakdown(report, folder / "bench_stages.png")]
    if report.get("scaling"):
        out.append(scaling(report, folder / "bench_scaling.png"))
    return out
