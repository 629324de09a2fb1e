import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.config.vision import VisionConfig
from device.contracts import SourceError
from device.vision.framering import FrameOwnershipError, FrameRing, RingFull
from device.vision.replay import ReplayError, ReplaySource, parse_manifest
from device.vision.sources import open_source


def _folder(tmp_path: Path, n: int = 4, fps: float = 10.0) -> Path:
    for i in range(n):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
    frames = [{"file": f"{i}.png", "t": i / fps} for i in range(n)]
    (tmp_path / "replay.json").write_text(json.dumps({"format": 1, "frames": frames}))
    return tmp_path


def test_ring_zeroes_on_release_and_reuses_buffers():
    ring = FrameRing(2)
    a = ring.acquire((4, 4, 3))
    a[:] = 200
    b = ring.acquire((4, 4, 3))
    with pytest.raises(RingFull):
        ring.acquire((4, 4, 3))
    ring.release(a)
    assert a.max() == 0
    assert ring.acquire((4, 4, 3)) is a
    ring.release(b)
    assert ring.in_use() == 1


def test_a_frame_released_twice_or_a_foreign_array_fails_loudly():
    ring = FrameRing(2)
    a = ring.acquire((4, 4, 3))
    b = ring.acquire((4, 4, 3))
    ring.release(a)
    with pytest.raises(FrameOwnershipError, match="twice"):
        ring.release(a)  # silently freeing it again could zero a newer frame in the same buffer
    with pytest.raises(FrameOwnershipError, match="not one of"):
        ring.release(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FrameOwnershipError, match="not one of"):
        ring.release(b.copy())  # a copy is not the frame: releasing it would leave b's pixels alive
    ring.release(b[1:3])  # a view of the frame is the frame
    assert ring.in_use() == 0


def test_a_frame_held_when_the_source_closes_is_released_once_and_never_frees_a_newer_one():
    ring = FrameRing(1)
    held = ring.acquire((4, 4, 3))
    held[:] = 7
    ring.clear()
    assert held.max() == 0  # closing zeroes it under the holder
    newer = ring.acquire((4, 4, 3))  # the ring starts afresh
    assert newer is not held
    ring.release(held)
    with pytest.raises(FrameOwnershipError):
        ring.release(held)
    assert ring.in_use() == 1  # the late release did not free the newer frame
    ring.release(newer)


def test_folder_replay_is_deterministic_and_frames_are_zeroed(tmp_path):
    src = ReplaySource(_folder(tmp_path), ring_size=2, pace="fast")
    seen = []
    for frame in src.frames():
        seen.append((frame.index, frame.timestamp, int(frame.image[0, 0, 0])))
        image = frame.image
        src.release(frame)
        assert image.max() == 0
    assert seen == [(0, 0.0, 0), (1, 0.1, 40), (2, 0.2, 80), (3, 0.3, 120)]
    again = ReplaySource(tmp_path, pace="fast")
    assert [(f.index, f.timestamp) for f in _drain(again)] == [s[:2] for s in seen]


def _drain(src):
    out = []
    for frame in src.frames():
        out.append(frame)
        src.release(frame)
    return out


def test_recorded_pace_sleeps_to_the_timestamps(tmp_path):
    now = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(round(s, 3))
        now[0] += s

    src = ReplaySource(_folder(tmp_path, fps=5.0), pace="recorded", clock=lambda: now[0], sleep=sleep)
    _drain(src)
    assert sleeps == [0.2, 0.2, 0.2]


def test_replay_stalls_with_a_clear_error_if_frames_are_not_released(tmp_path):
    src = ReplaySource(_folder(tmp_path), ring_size=2, pace="fast")
    with pytest.raises(ReplayError, match="release"):
        list(src.frames())


def test_corrupt_frame_in_a_folder_is_skipped_and_counted(tmp_path):
    folder = _folder(tmp_path)
    (folder / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    src = ReplaySource(folder, pace="fast")
    assert [f.index for f in _drain(src)] == [0, 1, 3]
    assert src.corrupt_frames == 1


@pytest.mark.parametrize(
    "name",
    ["compreface_corrupted.png", "compreface_truncated.jpg", "sk_truncated.jpg", "compreface_empty.png"],
)
def test_robustness_files_give_clear_errors(shared_data, name):
    path = shared_data / "robustness" / name
    with pytest.raises(SourceError) as err:
        open_source(f"replay:{path}", VisionConfig())
    assert name in str(err.value)
    assert any(w in str(err.value) for w in ("truncated", "corrupt", "empty"))


def _opencv_has_reader(path) -> bool:
    import cv2

    return cv2.haveImageReader(str(path))


@pytest.mark.parametrize(
    "name", ["compreface_einstein.gif", "compreface_einstein.webp", "compreface_einstein.jpeg"]
)
def test_valid_stills_replay_as_one_frame(shared_data, name):
    if not _opencv_has_reader(shared_data / "robustness" / name):
        pytest.skip("this OpenCV has no GIF decoder (added in 4.11; a Pi with apt's numpy 1.x gets 4.10)")
    frames = _drain(open_source(f"replay:{shared_data / 'robustness' / name}", VisionConfig()))
    assert len(frames) == 1


def test_empty_and_garbage_video_files(tmp_path):
    empty = tmp_path / "a.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        open_source(f"replay:{empty}", VisionConfig())
    junk = tmp_path / "b.mp4"
    junk.write_bytes(b"\x00\x01" * 5000)
    with pytest.raises(SourceError, match=str(junk)):
        open_source(f"replay:{junk}", VisionConfig())


def test_video_replay_has_monotonic_timestamps(shared_data):
    src = open_source(
        f"replay:{shared_data / 'video/blink/repeating_blink_video_v1.mp4'}", VisionConfig(replay_pace="fast")
    )
    frames = _drain(src)
    assert len(frames) == 286
    times = [f.timestamp for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert [f.index for f in frames] == list(range(286))


@pytest.mark.parametrize("spec", ["bogus", "v4l2:x", "replay:", "picamera2:1", "replay:/nonexistent/x.mp4"])
def test_bad_specs_are_clear_errors(spec):
    with pytest.raises(SourceError):
        open_source(spec, VisionConfig())


def test_picamera2_off_the_pi_is_a_clear_error():
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="Raspberry Pi"):
            open_source("picamera2", VisionConfig())
    else:
        pytest.skip("picamera2 is importable here (a Pi)")


def test_absent_v4l2_camera_retries_with_backoff_then_gives_up():
    from device.config.vision import CameraConfig
    from device.vision.camera import V4l2Camera

    waits = []
    cam = V4l2Camera(
        63,
        CameraConfig(retry_initial_s=0.01, retry_max_s=0.04, give_up_after_s=0.001),
        ring_size=2,
        sleep=waits.append,
    )
    with pytest.raises(SourceError, match="v4l2:63"):
        for _ in cam.frames():
            pass
    assert cam.counters["errors"] >= 1
    assert waits == sorted(waits)


@given(
    st.lists(
        st.fixed_dictionaries({"file": st.text(min_size=1, max_size=8), "t": st.floats(0, 100)}), max_size=5
    )
)
def test_manifest_parser_accepts_or_rejects_cleanly(frames):
    try:
        entries = parse_manifest({"format": 1, "frames": frames})
    except ReplayError as exc:
        assert "replay.json" in str(exc)
    else:
        assert [e.t for e in entries] == sorted(e.t for e in entries)
        assert all(".." not in e.file.split("/") for e in entries)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"format": 2, "frames": []},
        {"format": 1, "frames": []},
        {"format": 1, "frames": [{"file": "../x.png", "t": 0}]},
        {"format": 1, "frames": [{"file": "a", "t": -1}]},
        {"format": 1, "frames": [{"file": "a", "t": 1}, {"file": "b", "t": 0.5}]},
    ],
)
def test_manifest_parser_rejects(raw):
    with pytest.raises(ReplayError):
        parse_manifest(raw)


def test_demo_replay_is_generated_deterministically(tmp_path):
    from device.vision.demo import make_demo

    a = make_demo(tmp_path / "a")
    b = make_demo(tmp_path / "b")
    manifest = json.loads((a / "replay.json").read_text())
    assert len(manifest["frames"]) > 60
    assert (a / "00010.jpg").read_bytes() == (b / "00010.jpg").read_bytes()
    assert len(_drain(ReplaySource(a, pace="fast"))) == len(manifest["frames"])


def test_recorder_refuses_without_consent_and_writes_only_where_told(tmp_path, shared_data):
    from device.cli import main

    out = tmp_path / "rec"
    assert (
        main(
            [
                "record",
                "--source",
                f"replay:{shared_data / 'robustness/compreface_einstein.png'}",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert not out.exists()
    assert (
        main(
            [
                "record",
                "--source",
                f"replay:{shared_data / 'robustness/compreface_einstein.png'}",
                "--out",
                str(out),
                "--consent",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "replay.json"]
    assert len(_drain(ReplaySource(out, pace="fast"))) == 1


class _CountingReleases:
    """A real replay source whose releases are counted (the loop helper must release every frame)."""

    def __init__(self, source) -> None:
        self.source, self.released = source, 0

    def frames(self):
        return self.source.frames()

    def release(self, frame) -> None:
        self.released += 1
        self.source.release(frame)


def test_iter_frames_releases_each_frame_also_on_break_and_error(tmp_path):
    from device.vision.sources import iter_frames
    from tests.replay_faces import make_replay

    replay = make_replay(tmp_path / "replay", 2)
    counting = _CountingReleases(ReplaySource(replay, ring_size=2, pace="fast"))
    with iter_frames(counting) as frames:
        for i, frame in enumerate(frames):
            assert frame.image.any()
            if i == 2:
                break
    assert counting.released == 3
    with pytest.raises(RuntimeError), iter_frames(counting) as frames:
        for _frame in frames:
            raise RuntimeError("a stage failed")
    assert counting.released == 4
