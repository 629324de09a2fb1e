"""The iris model runs only where a blink can be: half rate on open eyes, every frame around a dip."""

from __future__ import annotations

import math

import numpy as np

from device.config.vision import LivenessConfig
from device.vision.liveness.irisgate import IrisGate
from device.vision.meshpoints import LEFT_EYELIDS, RIGHT_EYELIDS, eyelid_opening


def test_open_eyes_are_sampled_at_the_configured_rate():
    gate = IrisGate(LivenessConfig(iris_every=2))
    runs = [gate.due(0.30, urgent=False) for _ in range(20)]
    assert sum(runs) == 10 and runs[1::2] == [True] * 10


def test_every_frame_runs_while_the_detector_needs_it_or_the_mesh_dips():
    gate = IrisGate(LivenessConfig(iris_every=4))
    assert all(gate.due(0.30, urgent=True) for _ in range(5))  # no baseline yet / a dip under way
    for _ in range(8):
        gate.due(0.30, urgent=False)
    assert gate.due(0.27, urgent=False)  # 0.9 of the mesh's recent opening: a dip
    assert gate.due(0.25, urgent=False)


def test_every_one_means_every_frame_and_a_bad_opening_is_sampled():
    gate = IrisGate(LivenessConfig(iris_every=1))
    assert all(gate.due(0.3, urgent=False) for _ in range(6))
    gate = IrisGate(LivenessConfig(iris_every=4))
    for _ in range(8):
        gate.due(0.3, urgent=False)
    assert gate.due(math.nan, urgent=False)  # nothing known: the iris model judges (fail closed there)


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
