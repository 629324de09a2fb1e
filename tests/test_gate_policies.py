"""What each liveness policy means at the gate, on the demo photo replay with the person in it enrolled: with
`passive` (or `off`) her PHOTO opens the gate, with `challenge` it never does (docs/door.md, the gate;
scripts/gate_photo_report.py measures the same on printed-photo attacks of LFW people)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.contracts import Frame
from device.vision.demo import make_demo
from device.vision.replay import ReplaySource
from tests.gate_rig import GateBench, enrol_astronaut
from tests.vision_helpers import model_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate-policies")
    fog, pub = enrol_astronaut(tmp / "gallery")
    source = ReplaySource(make_demo(tmp / "demo"))
    frames = []
    for frame in source.frames():
        frames.append(Frame(frame.index, frame.timestamp, frame.monotonic, frame.image.copy()))
        source.release(frame)
    return tmp, fog, pub, frames


@pytest.mark.parametrize(("policy", "opens"), [("passive", 1), ("off", 1), ("challenge", 0)])
def test_a_photo_of_an_enrolled_person_opens_the_gate_unless_the_challenge_runs(
    demo, policy: str, opens: int
) -> None:
    tmp, fog, pub, frames = demo
    bench = GateBench(Path(tmp) / policy, fog, pub, policy, model_store())
    try:
        result = bench.run(frames)
    finally:
        bench.close()
    assert sum(opened for _, _, opened in result) == opens
    assert bench.gate.opened == opens
    if opens:
        obs, match, _ = next(r for r in result if r[2])
        assert match is not None and match.subject == "eileen" and match.score > match.threshold
        assert [r.code for r in obs.reasons] == [f"liveness.{policy}"]
    else:
        assert all(obs.decision == "rejected" for obs, _, _ in result)
        assert any(p.state == "prompt" for p in bench.prompts)  # the challenge did ask her to move
