"""A stage that raises drops its frame or its track, with a reason code and a counter; the service keeps
running and repeated failures raise the `stage_failures` alarm in health. Durations run on the frames'
monotonic time, so a wall-clock step neither ends nor prolongs a track.

Real models, real faces (scikit-image's astronaut), the real service loop with a real mosquitto.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from device.config import load_config
from device.config.vision import LivenessConfig, QualityConfig, VisionConfig
from device.contracts import Frame
from device.runtime import compose
from device.runtime.alarms import Alarms
from device.runtime.lifecycle import Lifecycle
from device.runtime.runtime_config import RuntimeConfig
from device.runtime.service import Service
from device.vision.faults import StageFaults, where
from device.vision.pipeline import build_pipeline
from tests.api_schemas import errors
from tests.broker import Broker
from tests.replay_faces import FRAME_H, FRAME_W, _face, make_replay
from tests.test_service_loop import _config, _wait
from tests.vision_helpers import model_store


class Boom(RuntimeError):
    pass


def failing(real, calls: set[int]):
    """`real`, except that the calls numbered in `calls` (from 0) raise."""
    count = {"n": 0}

    def call(*args, **kwargs):
        n = count["n"]
        count["n"] += 1
        if n in calls:
            raise Boom("secret pixel values 12 34 56")  # text that must never reach a log or health
        return real(*args, **kwargs)

    return call


def _scene(face_at: int | None) -> np.ndarray:
    frame = np.full((FRAME_H, FRAME_W, 3), 96, np.uint8)
    if face_at is not None:
        face = _face()
        h, w = face.shape[:2]
        frame[10 : 10 + h, face_at : face_at + w] = face
    return frame


def _frames(appearances: int, face_frames: int = 12, gap_frames: int = 10, fps: float = 10.0):
    """(index, wall time, monotonic time, image): the face at a new place for each appearance."""
    i = 0
    for k in range(appearances):
        for face_at in [10 + 90 * (k % 2)] * face_frames + [None] * gap_frames:
            yield i, 1_700_000_000 + i / fps, 50.0 + i / fps, _scene(face_at)
            i += 1


def _run(pipeline, frames):
    out = []
    for i, wall, mono, image in frames:
        out += pipeline.process(Frame(index=i, timestamp=wall, monotonic=mono, image=image))
    return out + pipeline.flush()


@pytest.fixture(scope="module")
def store():
    return model_store()


def _pipeline(store, **vision):
    vision.setdefault("quality", QualityConfig(min_face_px=40))  # the astronaut's face here: ~57 px
    return build_pipeline(VisionConfig(liveness=LivenessConfig(policy="off"), **vision), store)


def test_a_failing_embedder_drops_that_track_only(store, caplog) -> None:
    pipeline = _pipeline(store)
    embedder = pipeline._encoder.embedder
    embedder.probe = failing(embedder.probe, {0})  # type: ignore[method-assign]
    events = _run(pipeline, _frames(3))
    assert [e.decision for e in events] == ["rejected", "accepted", "accepted"]
    dropped = events[0]
    assert [r.code for r in dropped.reasons] == ["track.stage_failed"]
    assert dropped.embedding is None and dropped.face_crop is None
    faults = pipeline.stats()["stage_failures"]
    assert faults["total"] == {"embed": 1} and faults["last"].startswith(
        "embed: Boom at test_stage_failures.py:"
    )
    assert "secret" not in caplog.text and "secret" not in json.dumps(pipeline.stats())


@pytest.mark.parametrize(
    ("stage", "target"),
    [
        ("detect", lambda p: (p._detector, "detect")),
        ("quality", lambda p: (p._quality, "assess")),
        ("landmarks", lambda p: (p._mesh, "run")),
    ],
)
def test_any_stage_that_raises_drops_its_frame_or_track_and_the_next_face_is_decided(
    store, stage, target
) -> None:
    pipeline = _pipeline(store)
    owner, name = target(pipeline)
    setattr(owner, name, failing(getattr(owner, name), {0}))  # its first call
    events = _run(pipeline, _frames(2))
    assert pipeline.stats()["stage_failures"]["total"] == {stage: 1}
    assert events[-1].decision == "accepted"  # the next face: decided as ever
    codes = [r.code for e in events for r in e.reasons]
    if stage == "detect":
        assert "track.stage_failed" not in codes  # one frame fewer, the track goes on
    else:
        assert codes.count("track.stage_failed") == 1 and events[0].decision == "rejected"


def test_a_wall_clock_step_neither_ends_nor_prolongs_a_track(store) -> None:
    """The quality gate refuses every frame (faces far too small), so only the decision time limit ends the
    track: at max_decision_s of monotonic time, whatever the wall clock does meanwhile."""
    for step in (3600.0, -3600.0):
        pipeline = _pipeline(store, quality=QualityConfig(min_face_px=1024), max_decision_s=2.0)
        frames = []
        for i in range(40):  # 4 s of one face at 10 fps
            wall = 1_700_000_000 + i / 10 + (step if i >= 5 else 0.0)
            frames.append((i, wall, 50.0 + i / 10, _scene(10)))
        events = []
        for i, wall, mono, image in frames:
            got = pipeline.process(Frame(index=i, timestamp=wall, monotonic=mono, image=image))
            events += [(i, e) for e in got]
        assert len(events) == 1, events  # one track: the step did not end it (tracker.max_missed_s)
        i, obs = events[0]
        assert i == 21  # 2.1 s after the first frame on the monotonic clock: not at the step, not never
        assert [r.code for r in obs.reasons] == ["track.timeout"]
        assert obs.last_seen - obs.first_seen == pytest.approx(2.1 + step)  # stamps stay wall-clock


def test_faults_keep_type_and_place_never_the_text() -> None:
    clock = [0.0]
    faults = StageFaults(recent_s=60, clock=lambda: clock[0])
    try:
        raise ValueError("array([[12, 34]])")
    except ValueError as exc:
        faults.record("embed", exc, "track 1")
        assert where(exc).startswith("ValueError at test_stage_failures.py:")
    alarms = Alarms(10.0, clock=lambda: clock[0])
    ok = {"ended": False, "error": None}
    roomy = {"free_bytes": 10**12, "reserve_bytes": 0, "max_bytes": 0, "bytes": 0}
    for _ in range(2):
        faults.record("embed", ValueError("x"), "track 2")
    snap = alarms.snapshot(ok, roomy, faults.snapshot())["stage_failures"]
    assert snap["active"] and "3 processing stage failures" in snap["reason"] and "12" not in snap["reason"]
    clock[0] += 61
    assert not alarms.snapshot(ok, roomy, faults.snapshot())["stage_failures"]["active"]
    assert faults.snapshot()["total"] == {"embed": 3}


def test_the_service_keeps_running_and_health_raises_the_alarm(tmp_path: Path) -> None:
    """Every embedding fails: each face is rejected (track.stage_failed), the loop keeps serving, and after
    three failures health says so in its alarms."""
    model_store()
    replay = make_replay(tmp_path / "replay", 4, face_frames=6)
    got: list[dict] = []
    with Broker(tmp_path / "mq") as broker:
        vision = {
            "source": f"replay:{replay}",
            "replay_pace": "fast",
            "quality": {"min_face_px": 40},
            "liveness": {"policy": "off", "passive_min_frames": 3},
        }
        cfg = load_config(None, {**_config(tmp_path, broker.url, replay), "vision": vision})
        stages = compose.vision(cfg)
        pipeline = stages[2]
        embedder = pipeline._encoder.embedder  # type: ignore[attr-defined]
        embedder.probe = failing(embedder.probe, set(range(1000)))
        lifecycle = Lifecycle({})
        service = Service(RuntimeConfig(cfg), compose.build(cfg, stages=stages), lifecycle, lambda: cfg)
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="faults-watch")
        watcher.on_connect = lambda c, *_: c.subscribe("faceonly/v1/dev/loop-01/#", qos=1)
        watcher.on_message = lambda c, u, m: got.append(json.loads(m.payload))
        watcher.connect(broker.host, broker.port)
        watcher.loop_start()
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        try:

            def faulty_health() -> bool:
                return any(g.get("type") == "health" and g["alarms"]["stage_failures"]["active"] for g in got)

            assert _wait(faulty_health, 60)
            health = next(
                g for g in got if g.get("type") == "health" and g["alarms"]["stage_failures"]["active"]
            )
            assert health["stage_failures"]["total"] == {"embed": health["stage_failures"]["recent"]}
            assert errors(health) == []
            events = [g for g in got if g.get("type") == "event.face"]
            assert events and all(
                [r["code"] for r in e["observation"]["reasons"]] == ["track.stage_failed"] for e in events
            )
            assert thread.is_alive() and "secret" not in json.dumps(got)
        finally:
            lifecycle.request_stop()
            thread.join(30)
            watcher.loop_stop()
            watcher.disconnect()
    assert not thread.is_alive()
