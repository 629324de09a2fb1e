"""`faceonly evaluate --pad ... --plots DIR`: BPCER per bona fide clip and variant, APCER per attack type.

pad_bpcer.png: one bar group per clip and challenge, one bar per robustness variant (within 2 tries, cue
uncalibrated). pad_apcer.png: pooled and worst-case APCER per attack type, uncalibrated and calibrated.
Only rates are drawn, never an image.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from faceonly_lab.plots.base import require_matplotlib


def pad_plots(summary: dict[str, Any], folder: Path) -> list[Path]:
    plt = require_matplotlib()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    rows = [r for r in summary["bpcer"] if not r["calibrated"] and r["bpcer_2_tries"] is not None]
    if rows:
        groups: dict[str, dict[str, float]] = defaultdict(dict)
        variants: list[str] = []
        for r in rows:
            groups[f"{r['clip'][:22]}\n{r['challenge']}"][r["variant"]] = 100 * r["bpcer_2_tries"]
            if r["variant"] not in variants:
                variants.append(r["variant"])
        fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(groups)), 4.5))
        width = 0.8 / len(variants)
        x = np.arange(len(groups))
        for k, variant in enumerate(variants):
            ax.bar(x + k * width, [g.get(variant, np.nan) for g in groups.values()], width, label=variant)
        ax.axhline(5, color="k", ls="--", lw=0.8, label="target 5%")
        ax.set_xticks(x + 0.4 - width / 2, list(groups), fontsize=6, rotation=30, ha="right")
        ax.set_ylabel("BPCER within 2 tries (%)")
        ax.set_title("Bona fide: BPCER per clip, challenge and robustness variant (cue uncalibrated)")
        ax.legend(fontsize=6, ncol=4)
        fig.tight_layout()
        out.append(folder / "pad_bpcer.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    if summary["apcer"]:
        labels = [
            f"{r['attack_type']}\n({'calibrated' if r['calibrated'] else 'uncalibrated'})"
            for r in summary["apcer"]
        ]
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(labels)), 4))
        x = np.arange(len(labels))
        ax.bar(x - 0.2, [100 * r["apcer_pooled"] for r in summary["apcer"]], 0.4, label="pooled")
        ax.bar(x + 0.2, [100 * r["apcer_worst"] for r in summary["apcer"]], 0.4, label="worst instrument")
        ax.axhline(10, color="k", ls="--", lw=0.8, label="target 10% (screen replays)")
        ax.set_xticks(x, labels, fontsize=7, rotation=20, ha="right")
        ax.set_ylabel("APCER (%)")
        ax.set_title("Attacks accepted within 2 tries, per attack type")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(folder / "pad_apcer.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    return out
