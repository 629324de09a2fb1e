"""The iris model runs only where a blink can be: on open eyes often enough that no blink falls between two\nreads, on every frame around a dip."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from device.config.vision import LivenessConfig
from device.vision.liveness.irisgate import IrisGate
from device.vision.meshpoints import LEFT_EYELIDS, RIGHT_EYELIDS, eyelid_opening


def _runs(gate: IrisGate, fps: float, frames: int, opening: float = 0.30) -> list[bool]:
    return [gate.due(50.0 + k / fps, opening, urgent=False) for k in range(frames)]


@pytest.mark.parametrize(("fps", "most"), [(30.0, 15), (24.0, 15), (15.0, 30), (12.5, 30)])
def test_open_eyes_are_read_often_enough_that_no_gap_exceeds_the_limit(fps: float, most: int) -> None:
    """At 0.1 s the shortest blink cannot fall between two reads: every 2nd-3rd frame at 24-30 fps, every frame
    at 15 fps (a rule in frames, every 2nd, left 133-160 ms gaps at 12.5-15 fps and missed a short blink)."""
    runs = _runs(IrisGate(LivenessConfig(iris_max_gap_s=0.1)), fps, 30)
    read = [k / fps for k, run in enumerate(runs) if run]
    assert max(b - a for a, b in itertools.pairwise(read)) <= 0.1 + 1e-9
    assert sum(runs) <= most and (fps < 20 or sum(runs) < 30)


def test_a_frame_after_a_stall_is_read() -> None:
    gate = IrisGate(LivenessConfig(iris_max_gap_s=0.1))
    _runs(gate, 30.0, 10)
    assert gate.due(50.0 + 10 / 30 + 0.2, 0.30, urgent=False)  # the camera paused: the gap is already over


def test_every_frame_runs_while_the_detector_needs_it_or_the_mesh_dips() -> None:
    gate = IrisGate(LivenessConfig(iris_max_gap_s=0.5))
    assert all(gate.due(50.0 + k / 30, 0.30, urgent=True) for k in range(5))  # no baseline yet / a dip
    t = [50.2 + k / 30 for k in range(10)]
    for k in range(8):
        gate.due(t[k], 0.30, urgent=False)
    assert gate.due(t[8], 0.27, urgent=False)  # 0.9 of the mesh's recent opening: a dip
    assert gate.due(t[9], 0.25, urgent=False)


def test_a_bad_opening_is_read() -> None:
    gate = IrisGate(LivenessConfig(iris_max_gap_s=0.5))
    runs = _runs(gate, 30.0, 8)
    assert not all(runs)
    assert gate.due(50.0 + 8 / 30, math.nan, urgent=False)  # nothing known: the iris judges (fail closed)


def test_eyelid_opening_falls_when_the_lids_close():
    xy = np.zeros((468, 2), np.float32)
    xy[[33, 133, 362, 263]] = [[0, 0], [30, 0], [60, 0], [90, 0]]
    for upper, lower in (*RIGHT_EYELIDS, *LEFT_EYELIDS):
        x = 15 if upper in (159, 386) else 10
        base = 0 if upper < 300 else 60
        xy[upper], xy[lower] = [base + x, -5], [base + x, 5]
    open_ = eyelid_opening(xy)
    for upper, lower in (*RIGHT_EYELIDS, *LEFT_EYELIDS):
        xy[upper, 1], xy[lower, 1] = -1, 1
    assert abs(open_ - 10 / 30) < 1e-6
    assert eyelid_opening(xy) < open_ / 4
