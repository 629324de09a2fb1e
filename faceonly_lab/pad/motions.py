"""Motions proposed from a clip's own traces, for a clip the manifest does not annotate (a held-out set listed
by label only): which blinks and turns the person performs, and where, read from the shipped models' per-frame
eye opening and head yaw.

The rules are deliberately looser than the decision's, so that a motion the terminal would fail to see is still
proposed and its run counts as a failure, not as "cannot answer":
- blink: the eye opening dips below BLINK_DIP of its 0.5 s baseline (the decision: `blink_dip`, 0.72) and is
  back above BLINK_REOPEN within BLINK_MAX_CLOSED_S (the decision: 0.4 s), on frames the decision calls
  steady; the face's proportions are not checked (that is the photo-flick defence, not a blink's definition).
- turn: the yaw leaves the clip's median pose by `turn_onset_deg` and reaches `turn_min_deg` (what the prompt
  asks for) before it returns; the motion runs from the last frame at rest to the last frame away.
Looser still proposes more: a wink, a glance down or a sway can become a proposed motion, whose run may fail.
BLINK_DIP was chosen on the tune clips only (the blink video: 12 of 12 blinks, nothing else; the head-turn
clip: no blink proposed); `faceonly evaluate --pad --propose-motions` compares proposals with the annotations
of any manifest that has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from device.config.vision import LivenessConfig
from device.vision.liveness.blink import BlinkDetector
from faceonly_lab.pad.manifest import Motion

BLINK_DIP = 0.80
BLINK_REOPEN = 0.85
BLINK_MAX_CLOSED_S = 0.8
MAX_FACE_GAP = 2  # frames without a face inside one turn (a detector miss mid-turn)
MATCH_TOLERANCE = 3  # frames: a proposal agrees with an annotation of the same kind it overlaps within this

# Per frame: None (no face) or (cue, yaw, openness, steady, face aspect), as faceonly_lab.pad.evaluate makes it.
Features = Sequence[tuple[Any, float, float, bool, float] | None]


def rules(config: LivenessConfig) -> str:
    """The proposal rules in a sentence (for the report)."""
    return (
        f"blink: the eye opening below {BLINK_DIP:.2f} of its {config.blink_baseline_s:g} s baseline, back above "
        f"{BLINK_REOPEN:.2f} within {BLINK_MAX_CLOSED_S:g} s, on steady frames (the decision: "
        f"{config.blink_dip:.2f}, {config.blink_max_closed_s:g} s); turn: the yaw leaves the clip's median pose "
        f"by {config.turn_onset_deg:g} deg and reaches {config.turn_min_deg:g} deg before it returns"
    )


def propose(features: Features, fps: float, config: LivenessConfig) -> tuple[Motion, ...]:
    """The blinks and turns in a clip's traces, in frame order."""
    found = _blinks(features, fps, config) + _turns(features, config)
    return tuple(sorted(found, key=lambda m: (m.onset, m.kind)))


def _blinks(features: Features, fps: float, config: LivenessConfig) -> list[Motion]:
    loose = config.model_copy(
        update={
            "blink_dip": BLINK_DIP,
            "blink_reopen": BLINK_REOPEN,
            "blink_max_closed_s": BLINK_MAX_CLOSED_S,
            "blink_max_face_change": 1.0,
        }
    )
    detector = BlinkDetector(loose)
    out = []
    for i, f in enumerate(features):
        if f is None:
            detector.update(i / fps, i, float("nan"), False)
            continue
        blink = detector.update(i / fps, i, f[2], f[3])
        if blink is not None:
            out.append(Motion("blink", blink.start_index, blink.end_index))
    return out


def _turns(features: Features, config: LivenessConfig) -> list[Motion]:
    yaw = np.array([np.nan if f is None else f[1] for f in features], np.float64)
    if not np.isfinite(yaw).any():
        return []
    rest = float(np.nanmedian(yaw))
    out = []
    for sign, kind in ((1.0, "turn_left"), (-1.0, "turn_right")):
        away = sign * (yaw - rest) >= config.turn_onset_deg  # NaN compares False
        i = 0
        while i < len(yaw):
            if not away[i]:
                i += 1
                continue
            j = i
            while (k := _next_away(away, yaw, j)) is not None:
                j = k
            if np.nanmax(sign * (yaw[i : j + 1] - rest)) >= config.turn_min_deg:
                out.append(Motion(kind, max(i - 1, 0), j))
            i = j + 1
    return out


def _next_away(away: np.ndarray, yaw: np.ndarray, j: int) -> int | None:
    """The next frame away from rest after `j`, across at most MAX_FACE_GAP frames without a face."""
    for k in range(j + 1, min(j + 2 + MAX_FACE_GAP, len(yaw))):
        if away[k]:
            return k
        if np.isfinite(yaw[k]):
            return None
    return None


def agreement(proposed: Sequence[Motion], annotated: Sequence[Motion]) -> dict[str, dict[str, int]]:
    """Per kind (blink, turn): annotations a proposal of the same kind overlaps (within MATCH_TOLERANCE frames),
    and how many of each there are."""
    out = {}
    for name, kinds in (("blink", {"blink"}), ("turn", {"turn_left", "turn_right"})):
        props = [m for m in proposed if m.kind in kinds]
        anns = [m for m in annotated if m.kind in kinds]
        used: set[int] = set()
        for a in anns:
            for k, p in enumerate(props):
                near = p.onset <= a.end + MATCH_TOLERANCE and p.end >= a.onset - MATCH_TOLERANCE
                if k not in used and p.kind == a.kind and near:
                    used.add(k)
                    break
        out[name] = {"annotated": len(anns), "proposed": len(props), "agreeing": len(used)}
    return out
