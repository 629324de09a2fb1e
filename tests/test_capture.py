"""Capture hand-off: a live camera faster than the loop gives the loop its latest frame and counts the
rest as dropped; a replay is never dropped; the capture thread owns open/read/close."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from device.config.vision import CameraConfig
from device.contracts import Frame
from device.runtime.capture import Capture, Handoff
from device.vision.camera import RetryingCamera
from device.vision.replay import ReplaySource

FPS = 30.0


class FakeCamera(RetryingCamera):
    """The real camera's read/retry loop and frame ring, with a sensor that delivers FPS frames a second."""

    name = "fake-camera"

    def __init__(self, fps: float = FPS) -> None:
        super().__init__(CameraConfig(width=160, height=120, fps=fps), ring_size=4)
        self.period = 1.0 / fps
        self.threads: dict[str, set[str]] = {"open": set(), "read": set(), "close": set()}
        self._next = 0.0

    def _open(self) -> None:
        self.threads["open"].add(threading.current_thread().name)
        self._next = time.monotonic()

    def _read(self) -> Frame:
        self.threads["read"].add(threading.current_thread().name)
        self._next += self.period
        time.sleep(max(0.0, self._next - time.monotonic()))  # the sensor's exposure clock
        return self._store(np.full((120, 160, 3), self._index % 251, np.uint8))

    def _close_device(self) -> None:
        self.threads["close"].add(threading.current_thread().name)


def test_a_camera_faster_than_the_loop_drops_and_counts_and_frames_stay_fresh() -> None:
    camera = FakeCamera()
    capture = Capture(camera)
    capture.start()
    ages, indices, behind = [], [], []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        frame = capture.get(1.0)
        assert frame is not None
        # How many newer frames the camera had already made: 0, or 1 being read or handed over right now.
        behind.append(camera._index - 1 - frame.index)
        ages.append(time.time() - frame.timestamp)
        indices.append(frame.index)
        time.sleep(0.1)  # a loop three times slower than the camera
        camera.release(frame)
    capture.stop()
    produced = camera.counters["frames"]
    stats = capture.stats()
    print(
        f"camera {FPS:.0f} fps, loop ~10 fps: produced {produced}, processed {len(ages)}, "
        f"dropped {stats['stale_dropped']}, frame age max {max(ages) * 1000:.1f} ms, "
        f"median {np.median(ages) * 1000:.1f} ms"
    )
    # Fresh in frames, not in milliseconds: on a loaded machine the capture thread itself can wait for the CPU.
    assert max(behind) <= 1, behind
    assert (
        stats["stale_dropped"] >= produced - len(ages) - 2 > 0
    )  # counted (one may still wait, one in the read)
    assert indices == sorted(indices)
    assert camera._ring.in_use() == 0  # every frame released (and zeroed), dropped ones included
    assert camera.threads["open"] == camera.threads["read"] == camera.threads["close"] == {"capture"}


def test_a_replay_is_never_dropped(tmp_path: Path) -> None:
    n = 12
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((24, 32, 3), i, np.uint8))
    manifest = {"format": 1, "frames": [{"file": f"{i}.png", "t": i / 100} for i in range(n)]}
    (tmp_path / "replay.json").write_text(json.dumps(manifest))
    source = ReplaySource(tmp_path, ring_size=3, pace="fast")
    capture = Capture(source)
    capture.start()
    got = []
    while (frame := capture.get(2.0)) is not None:
        got.append(frame.index)
        time.sleep(0.02)  # slower than the replay: it waits (backpressure)
        source.release(frame)
    capture.stop()
    assert capture.ended and capture.error is None
    assert got == list(range(n)) and capture.stats()["stale_dropped"] == 0


def test_stop_releases_and_the_capture_thread_closes_even_while_a_frame_waits() -> None:
    camera = FakeCamera()
    capture = Capture(camera)
    capture.start()
    frame = capture.get(1.0)
    assert frame is not None
    time.sleep(0.1)  # newer frames wait in the hand-off
    camera.release(frame)
    capture.stop()
    assert camera._closed and camera._ring.in_use() == 0
    assert camera.threads["close"] == {"capture"}


def _frame(i: int) -> Frame:
    return Frame(index=i, timestamp=float(i), monotonic=float(i), image=np.zeros((1, 1, 3), np.uint8))


@given(st.lists(st.sampled_from(["produce", "take"]), max_size=60))
def test_handoff_accounts_for_every_live_frame(ops) -> None:
    slot = Handoff()
    produced = taken = dropped = 0
    last_taken = -1
    for op in ops:
        if op == "produce":
            dropped += slot.replace(_frame(produced)) is not None
            produced += 1
        else:
            item = slot.take(0)
            if isinstance(item, Frame):
                assert item.index == produced - 1 > last_taken  # always the newest, never an older one
                last_taken = item.index
                taken += 1
    waiting = slot.take(0) is not None
    assert produced == taken + dropped + waiting


def picamera2_yuv420(image: np.ndarray, stride: int) -> np.ndarray:
    """`image` as picamera2's make_array("lores") gives a YUV420 stream: rows of `stride` bytes (padding
    after the pixels), the Y plane, then the U and V planes with rows of stride / 2."""
    import cv2

    h, w = image.shape[:2]
    i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: h * w], i420[h * w : h * w * 5 // 4], i420[h * w * 5 // 4 :]
    out = np.zeros((h * 3 // 2, stride), np.uint8)
    out[:h, :w] = y.reshape(h, w)
    chroma = out[h:].reshape(-1)
    plane = (h // 2) * (stride // 2)
    chroma[:plane].reshape(h // 2, stride // 2)[:, : w // 2] = u.reshape(h // 2, w // 2)
    chroma[plane:].reshape(h // 2, stride // 2)[:, : w // 2] = v.reshape(h // 2, w // 2)
    return out


class StandInPicamera2Module:
    """The slice of picamera2 the terminal uses. Every request hands out fresh arrays, as make_array does
    (XBGR main; YUV420 lores, rows padded to a stride of 96 bytes); they are kept here to be looked at
    afterwards."""

    LORES = np.zeros((60, 80, 3), np.uint8)
    LORES[:, :40] = (40, 60, 200)  # a red left half, a blue right half (BGR): a swap would show
    LORES[:, 40:] = (190, 90, 30)

    def __init__(self) -> None:
        self.handed_out: list[np.ndarray] = []
        self._n = 0

    def Picamera2(self) -> StandInPicamera2Module:
        return self

    def create_video_configuration(self, **config: object) -> dict[str, object]:
        return config

    def configure(self, config: object) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def set_controls(self, controls: object) -> None: ...

    def captured_request(self):  # type: ignore[no-untyped-def]
        import contextlib

        self._n += 1
        main = np.full((120, 160, 4), 40 + self._n, np.uint8)
        lores = picamera2_yuv420(self.LORES, stride=96)
        self.handed_out += [main, lores]

        class Request:
            def make_array(self, name: str) -> np.ndarray:
                return main if name == "main" else lores

        return contextlib.nullcontext(Request())


def test_the_pi_cameras_arrays_are_copied_on_and_zeroed() -> None:
    from device.vision.camera import Picamera2Camera

    module = StandInPicamera2Module()
    config = CameraConfig(width=160, height=120, lores_width=80, lores_height=60)
    camera = Picamera2Camera(config, 4, module)
    frames = camera.frames()
    for n in (1, 2):
        frame = next(frames)
        assert frame.image.shape == (120, 160, 3) and (frame.image == 40 + n).all()
        # The detector's image is the lores stream in colour (its chroma planes too), stride padding left out.
        assert frame.detect_image is not None and frame.detect_image.shape == (60, 80, 3)
        error = np.abs(frame.detect_image.astype(int) - module.LORES.astype(int))
        assert error[:, 2:38].max() <= 3 and error[:, 42:78].max() <= 3, error.max()
        camera.release(frame)
    camera.close()
    assert len(module.handed_out) == 4 and all(not array.any() for array in module.handed_out)
