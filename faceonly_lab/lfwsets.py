"""Identification CSVs (path,subject,role) from the images of LFW pairs (folds 1-5), for evaluation and tests.

G gallery photos (the first G by file name) per identity that has more than G; its other photos are probes;
identities with G or fewer photos are unknown probes. `half` keeps only every other identity (sorted by name:
"a" the even ones, "b" the odd ones), so that a threshold can be calibrated on one half's impostor pairs and
the figures measured on the other, disjoint half: nothing fitted on the data that reports the figure.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

from faceonly_lab.lfw import read_pairs

Half = Literal["all", "a", "b"]


def lfw_images(pairs_path: Path) -> dict[str, list[Path]]:
    """identity (the image's folder) -> its images in the pairs file, sorted."""
    pairs = read_pairs(pairs_path)
    by_identity: dict[str, set[Path]] = {}
    for p in pairs:
        for img in (p.img1, p.img2):
            by_identity.setdefault(img.parent.name, set()).add(img)
    return {name: sorted(imgs) for name, imgs in sorted(by_identity.items())}


def select_half(identities: list[str], half: Half) -> list[str]:
    names = sorted(identities)
    if half == "all":
        return names
    return names[0 if half == "a" else 1 :: 2]


def identification_rows(
    images: dict[str, list[Path]], gallery_photos: int, half: Half = "all"
) -> list[tuple[Path, str, str]]:
    if gallery_photos < 1:
        raise ValueError("gallery_photos must be at least 1")
    rows = []
    for name in select_half(list(images), half):
        photos = images[name]
        enrolled = len(photos) > gallery_photos
        for i, img in enumerate(photos):
            rows.append((img, name, "gallery" if enrolled and i < gallery_photos else "probe"))
    return rows


def write_identification_csv(
    pairs_path: Path, out: Path, gallery_photos: int, half: Half = "all"
) -> dict[str, int]:
    """Write the CSV (paths relative to it) and return its counts."""
    rows = identification_rows(lfw_images(pairs_path), gallery_photos, half)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "subject", "role"])
        for img, subject, role in rows:
            writer.writerow([os.path.relpath(img.resolve(), out.parent.resolve()), subject, role])
    gallery_subjects = {s for _, s, r in rows if r == "gallery"}
    return {
        "rows": len(rows),
        "gallery_subjects": len(gallery_subjects),
        "gallery_photos": sum(r == "gallery" for _, _, r in rows),
        "known_probes": sum(r == "probe" and s in gallery_subjects for _, s, r in rows),
        "unknown_probes": sum(r == "probe" and s not in gallery_subjects for _, s, r in rows),
    }
