"""Exposure metered on the face, through the real Picamera2Camera interface with a stand-in camera module that
applies the exposure value it is told (a dim room: the face starts near 40 grey levels). Replays: never."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from device.config.vision import CameraConfig, VisionConfig
from device.vision.camera import Picamera2Camera
from device.vision.exposure import FaceExposure, controls_of
from device.vision.quality import face_patch
from tests.vision_helpers import model_store


class StandInPicamera2:
    """The slice of picamera2's API the terminal uses; the scene is a real face, lit by 2^EV x `light`."""

    def __init__(self, scene: np.ndarray, light: float) -> None:
        self.scene, self.light = scene.astype(np.float32), light
        self.controls: dict[str, float] = {}
        self.history: list[float] = []

    # picamera2.Picamera2()
    def Picamera2(self):
        return self

    def create_video_configuration(self, main, lores, controls, buffer_count):
        self.controls.update(controls)
        return {"main": main}

    def configure(self, config) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_controls(self, controls: dict[str, float]) -> None:
        self.controls.update(controls)
        self.history.append(float(controls["ExposureValue"]))

    @contextmanager
    def captured_request(self):
        gain = self.light * 2.0 ** self.controls.get("ExposureValue", 0.0)
        image = np.clip(self.scene * gain, 0, 255).astype(np.uint8)

        class Request:
            def make_array(self, name: str) -> np.ndarray:
                return image

        yield Request()


@pytest.fixture(scope="module")
def face_scene(shared_data):
    import cv2

    from device.vision.stills import load_image

    still = load_image(shared_data / "verification/deepface/img1.jpg")
    scale = 400 / still.shape[0]
    still = cv2.resize(still, None, fx=scale, fy=scale)
    scene = np.full((480, 640, 3), 90, np.uint8)
    x = (640 - still.shape[1]) // 2
    scene[40 : 40 + still.shape[0], x : x + still.shape[1]] = still[:, : min(still.shape[1], 640)]
    return scene


def _face_brightness(detector, image) -> float | None:
    faces = detector.detect(image)
    if not faces:
        return None
    patch = face_patch(image, faces[0].box, shrink=0.15)
    return None if patch is None else float(patch.mean())


@pytest.mark.parametrize(
    "light",
    [
        0.3,  # a dim room: the face starts under 60 grey levels
        2.2,  # a bright window behind the camera: much of the face clips at 255 (the PAD report's x1.4 case)
    ],
)
def test_the_loop_brings_a_dim_or_a_clipped_face_to_its_target_through_the_camera_interface(
    face_scene, light
):
    from device.vision.detect import FaceDetector

    store = model_store()
    detector = FaceDetector(store, min_score=0.6)
    module = StandInPicamera2(face_scene, light=light)
    camera = Picamera2Camera(CameraConfig(width=640, height=480), 4, module)
    controls = controls_of(camera)
    assert controls is not None
    loop = FaceExposure(controls, target=115.0)
    seen = []
    frames = camera.frames()
    for _ in range(25):
        frame = next(frames)
        faces = detector.detect(frame.image)
        loop.observe(frame, faces)
        seen.append(_face_brightness(detector, frame.image))
        camera.release(frame)
    camera.close()
    assert module.controls["AeMeteringMode"] == 0
    assert seen[0] is not None and (seen[0] < 60 if light < 1 else seen[0] > 190), seen[:3]
    final = [b for b in seen[-5:] if b is not None]
    assert final and all(abs(np.log2(115.0 / b)) <= 0.45 for b in final), seen
    assert 0 < loop.ev <= 3.0 if light < 1 else -3.0 <= loop.ev < 0
    assert module.history[-1] == pytest.approx(loop.ev)
    assert len(module.history) < 12, module.history  # damped steps, then it holds inside the dead band


def test_without_a_face_the_exposure_relaxes_back_to_the_camera_s_own():
    class Controls:
        def __init__(self) -> None:
            self.values: list[float] = []

        def set_exposure_value(self, ev: float) -> None:
            self.values.append(ev)

    from device.contracts import Frame

    now = [0.0]
    ctl = Controls()
    loop = FaceExposure(lambda: ctl, clock=lambda: now[0])
    loop.ev = 2.0
    frame = Frame(0, 0.0, 0.0, np.zeros((10, 10, 3), np.uint8))
    for k in range(40):
        now[0] = k * 0.5
        loop.observe(frame, [])
    assert loop.ev == 0.0 and ctl.values[-1] == 0.0
    assert ctl.values[0] == 1.0  # it waited relax_after_s, then halved


def test_replays_are_never_altered(shared_data):
    from device.vision.replay import ReplaySource
    from device.vision.sources import open_source

    assert controls_of(ReplaySource(shared_data / "video/blink/repeating_blink_video_v1.mp4")) is None
    assert (
        controls_of(
            open_source("replay:" + str(shared_data / "verification/deepface/img1.jpg"), VisionConfig())
        )
        is None
    )


class StandInCapture:
    """cv2.VideoCapture's property interface, as a UVC webcam with (or without) manual exposure answers it."""

    def __init__(self, exposure: float, gain: float, manual: bool = True) -> None:
        import cv2

        self.props = {
            cv2.CAP_PROP_EXPOSURE: exposure,
            cv2.CAP_PROP_GAIN: gain,
            cv2.CAP_PROP_AUTO_EXPOSURE: 3.0,
        }
        self.manual = manual

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        import cv2

        if prop == cv2.CAP_PROP_AUTO_EXPOSURE and not self.manual:
            return False
        self.props[prop] = value
        return True


def test_v4l2_exposure_scales_exposure_time_then_gain_where_the_device_has_them():
    import cv2

    from device.vision.camera import V4l2Exposure

    cap = StandInCapture(exposure=156.0, gain=32.0)
    controls = V4l2Exposure.probe(cap)
    assert controls is not None and cap.props[cv2.CAP_PROP_AUTO_EXPOSURE] == 1  # manual
    controls.set_exposure_value(1.0)
    assert cap.props[cv2.CAP_PROP_EXPOSURE] == pytest.approx(312.0) and cap.props[cv2.CAP_PROP_GAIN] == 32.0
    controls.set_exposure_value(3.0)  # 8x: exposure time capped at 4x (motion blur), the rest as gain
    assert cap.props[cv2.CAP_PROP_EXPOSURE] == pytest.approx(624.0) and cap.props[cv2.CAP_PROP_GAIN] == 64.0
    assert V4l2Exposure.probe(StandInCapture(exposure=156.0, gain=0.0, manual=False)) is None
    assert V4l2Exposure.probe(StandInCapture(exposure=0.0, gain=0.0)) is None  # no exposure control
