"""Fail closed: a liveness measure that is missing or not finite never passes, and never reaches signing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.config.vision import LivenessConfig
from device.contracts import Prompt, Reason
from device.privacy.signing import canonical_json
from device.vision.liveness.planarity import homography_residual, planarity_score
from device.vision.liveness.session import LiveFrame, LivenessSession

FPS = 15.0
MESH_POINTS = 478


class FrameClock:
    """The session's monotonic clock, following the synthetic frames' time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(session: LivenessSession, clock: FrameClock, f: LiveFrame):
    clock.now = f.t if math.isfinite(f.t) else clock.now
    return session.update(f)


class Prompts:
    def __init__(self) -> None:
        self.seen: list[Prompt] = []

    def publish(self, prompt: Prompt) -> None:
        self.seen.append(prompt)


def _collinear_mesh(shift: float) -> np.ndarray:
    """Landmarks on one line: no homography fits them (OpenCV finds none)."""
    xs = np.linspace(100, 300, MESH_POINTS) + shift
    return np.stack([xs, np.full(MESH_POINTS, 200.0)], axis=1)


def test_no_homography_is_not_measured_rather_than_infinitely_3d() -> None:
    a, b = _collinear_mesh(0), _collinear_mesh(5)
    assert math.isnan(homography_residual(a, b, 60.0))
    nan_mesh = b.copy()
    nan_mesh[1] = np.nan
    assert math.isnan(homography_residual(a, nan_mesh, 60.0))
    residual, pairs = planarity_score([a, b, a, b], [0.0, 20.0, 25.0, 30.0], min_deg=8.0)
    assert math.isnan(residual) and pairs == 0


def _turn_session(meshes, yaw_of) -> tuple[LivenessSession, list[LiveFrame]]:
    config = LivenessConfig(steps=("turn",), seed=1, turn_time_s=2.0)
    sink = Prompts()
    clock = FrameClock()
    session = LivenessSession(7, config, "challenge", sink, clock)
    frames = []
    i = 0
    while not sink.seen and i < 100:  # the random pause before the prompt
        feed(
            session, clock, LiveFrame(t=i / FPS, index=i, yaw=0.0, mesh_xy=meshes(0), steady=True, good=True)
        )
        i += 1
    step = sink.seen[0].step
    sign = 1.0 if step == "turn_left" else -1.0
    for k in range(1, int(FPS * 3)):
        f = LiveFrame(t=(i + k) / FPS, index=i + k, yaw=sign * yaw_of(k), mesh_xy=meshes(k), good=True)
        frames.append(f)
        feed(session, clock, f)
    return session, frames


def test_a_turn_whose_planarity_cannot_be_measured_is_rejected() -> None:
    # A sweeping yaw with landmarks that fit no homography used to score inf, "it is 3D": a pass.
    session, _ = _turn_session(lambda i: _collinear_mesh(i), lambda i: min(40.0, 3.0 * i))
    result = session.give_up(Reason("track.left", "track ended"), 10.0)
    assert result.status == "failed", result
    assert "planarity" not in result.scores
    assert all(math.isfinite(v) for v in result.scores.values())


def test_non_finite_yaw_or_landmarks_never_count_towards_a_turn() -> None:
    def mesh(i: int) -> np.ndarray:
        m = np.random.default_rng(i).normal(200, 40, (MESH_POINTS, 2))
        m[::3] = np.nan
        return m

    session, _ = _turn_session(mesh, lambda i: float("nan") if i % 2 else 3.0 * i)
    result = session.give_up(Reason("track.left", "track ended"), 10.0)
    assert result.status == "failed"
    assert all(math.isfinite(v) for v in result.scores.values())


@pytest.mark.parametrize("risk", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_replay_risk_fails_the_passive_check(risk: float) -> None:
    config = LivenessConfig(passive_min_frames=2)
    session = LivenessSession(1, config, "passive", None, FrameClock())
    results = [session.update(LiveFrame(t=i / FPS, index=i, yaw=0.0, risk=risk, good=True)) for i in range(4)]
    assert results[-1].status == "failed"
    assert "not finite" in results[-1].reasons[-1]
    assert "replay_risk" not in results[-1].scores


def test_signing_refuses_non_finite_numbers_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"observation\.scores\.planarity \(inf\) is not a finite number"):
        canonical_json({"id": "x", "observation": {"scores": {"planarity": float("inf")}}})
    with pytest.raises(ValueError, match=r"embedding\[1\] \(nan\)"):
        canonical_json({"embedding": [0.5, float("nan")]})


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=80, deadline=None)
@given(
    policy=st.sampled_from(["challenge", "passive"]),
    frames=st.lists(
        st.tuples(
            ANY_FLOAT, st.none() | ANY_FLOAT, st.none() | ANY_FLOAT, st.sampled_from(["none", "nan", "flat"])
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_whatever_the_measures_nothing_non_finite_leaves_and_non_finite_risk_never_passes(
    policy, frames
) -> None:
    clock = FrameClock()
    session = LivenessSession(3, LivenessConfig(passive_min_frames=3), policy, Prompts(), clock)
    bad_risk = False
    result = None
    for i, (yaw, openness, risk, mesh_kind) in enumerate(frames):
        mesh = {"none": None, "nan": np.full((MESH_POINTS, 2), np.nan), "flat": _collinear_mesh(i)}[mesh_kind]
        bad_risk |= risk is not None and not math.isfinite(risk)
        f = LiveFrame(
            t=i / FPS, index=i, yaw=yaw, mesh_xy=mesh, openness=openness, risk=risk, steady=True, good=True
        )
        result = feed(session, clock, f)
        assert all(math.isfinite(v) for v in result.scores.values()), result.scores
        canonical_json({"scores": result.scores})  # signable
    result = session.give_up(Reason("track.left", "track ended"), 99.0)
    assert all(math.isfinite(v) for v in result.scores.values())
    if bad_risk:
        assert result.status == "failed"
