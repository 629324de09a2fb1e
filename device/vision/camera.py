"""Live cameras: a USB/V4L2 camera through OpenCV, and the Raspberry Pi camera through picamera2.

A camera that is unplugged, busy or returns a corrupt frame is reported (log + counters) and reopened with
exponential backoff; the service keeps running. Only `give_up_after_s` > 0 makes the source raise. Frames
are copied into the frame ring at once, so the driver's buffer goes back to the camera immediately.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from device.config.vision import CameraConfig
from device.contracts import Frame, SourceError
from device.vision.framering import FrameRing, RingFull

log = logging.getLogger(__name__)


class CameraError(Exception):
    """A camera failed in a way worth reporting; `temporary` errors are retried."""

    def __init__(self, message: str, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


class Backoff:
    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.next_s = initial_s

    def wait(self) -> float:
        delay = self.next_s
        self.next_s = min(self.max_s, self.next_s * 2)
        return delay

    def reset(self) -> None:
        self.next_s = self.initial_s


class RetryingCamera:
    """Shared open/read/retry loop; subclasses implement `_open`, `_read_into_ring`, `_close_device`."""

    name = "camera"
    live = True

    def __init__(
        self, config: CameraConfig, ring_size: int, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self._ring = FrameRing(ring_size)
        self._sleep = sleep
        self._backoff = Backoff(config.retry_initial_s, config.retry_max_s)
        self._open_device = False
        self._closed = False
        self.counters = {"frames": 0, "errors": 0, "reopens": 0, "dropped": 0}
        self.last_error = ""
        self._failing_since: float | None = None
        self._index = 0

    # subclass hooks
    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> Frame:
        raise NotImplementedError

    def _close_device(self) -> None:
        raise NotImplementedError

    def frames(self) -> Iterator[Frame]:
        while not self._closed:
            try:
                if not self._open_device:
                    self._open()
                    self._open_device = True
                    log.info("%s opened", self.name)
                frame = self._read()
            except RingFull:
                self.counters["dropped"] += 1
                continue
            except CameraError as exc:
                self._failed(exc)
                if not exc.temporary:
                    raise SourceError(f"{self.name}: {exc}") from None
                if self._gave_up():
                    raise SourceError(f"{self.name}: giving up after repeated failures: {exc}") from None
                self._sleep(self._backoff.wait())
                continue
            self._backoff.reset()
            self._failing_since = None
            self.counters["frames"] += 1
            yield frame

    def _failed(self, exc: CameraError) -> None:
        self.counters["errors"] += 1
        self.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        log.warning("%s: %s (retrying in %.1f s)", self.name, exc, self._backoff.next_s)
        if self._open_device:
            self._safe_close()
            self.counters["reopens"] += 1

    def _gave_up(self) -> bool:
        limit = self.config.give_up_after_s
        return (
            bool(limit) and self._failing_since is not None and time.monotonic() - self._failing_since > limit
        )

    def _safe_close(self) -> None:
        try:
            self._close_device()
        except Exception as exc:  # noqa: BLE001 - a dying driver fails on close in its own ways; reopening goes on
            log.warning("%s: close failed: %s", self.name, exc.__class__.__name__)
        self._open_device = False

    def _store(self, image: np.ndarray, detect_image: np.ndarray | None = None) -> Frame:
        buf = self._ring.acquire(image.shape)
        np.copyto(buf, image)
        index = self._index
        self._index += 1
        return Frame(
            index=index,
            timestamp=time.time(),
            monotonic=time.monotonic(),
            image=buf,
            detect_image=detect_image,
        )

    def release(self, frame: Frame) -> None:
        self._ring.release(frame.image)
        if frame.detect_image is not None:
            frame.detect_image.fill(0)

    def close(self) -> None:
        self._closed = True
        if self._open_device:
            self._safe_close()
        self._ring.clear()

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, **self.counters, "last_error": self.last_error}


class V4l2Camera(RetryingCamera):
    def __init__(self, device: int, config: CameraConfig, ring_size: int, **kw: Any) -> None:
        super().__init__(config, ring_size, **kw)
        self.device = device
        self.name = f"v4l2:{device}"
        self._cap: Any = None
        self._exposure: V4l2Exposure | None = None
        self._probed_cap: Any = None

    def _open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open /dev/video{self.device} (unplugged, busy or no permission)")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        cap.set(cv2.CAP_PROP_FPS, self.config.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of stale ones
        self._cap = cap

    def _read(self) -> Frame:
        ok, image = self._cap.read()
        if not ok or image is None:
            raise CameraError("no frame from the camera (unplugged or stalled)")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CameraError("corrupt frame (unexpected shape or type)")
        try:
            return self._store(image)
        finally:
            image.fill(0)

    def _close_device(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def exposure_controls(self) -> V4l2Exposure | None:
        """Manual exposure time (then gain) scaled by 2^EV, where the device offers them (open camera)."""
        if self._cap is None:
            return None
        if self._probed_cap is not self._cap:  # probed once per open
            self._probed_cap, self._exposure = self._cap, V4l2Exposure.probe(self._cap)
        return self._exposure


class V4l2Exposure:
    """V4L2 exposure through OpenCV: auto-exposure off, exposure time = the auto value x 2^EV, then gain."""

    def __init__(self, cap: Any, exposure: float, gain: float | None) -> None:
        self.cap, self.base_exposure, self.base_gain = cap, exposure, gain

    @classmethod
    def probe(cls, cap: Any) -> V4l2Exposure | None:
        import cv2

        exposure = cap.get(cv2.CAP_PROP_EXPOSURE)
        if not (exposure and exposure > 0) or not cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1):  # 1 = manual (V4L2)
            return None
        gain = cap.get(cv2.CAP_PROP_GAIN)
        return cls(cap, float(exposure), float(gain) if gain and gain > 0 else None)

    def set_exposure_value(self, ev: float) -> None:
        import cv2

        factor = 2.0**ev
        self.cap.set(cv2.CAP_PROP_EXPOSURE, self.base_exposure * min(factor, 4.0))
        if self.base_gain is not None:
            self.cap.set(cv2.CAP_PROP_GAIN, self.base_gain * max(1.0, factor / 4.0))


def yuv420_to_bgr(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """picamera2's YUV420 array (`height * 3 / 2` rows of `stride` bytes: the Y plane, then the U and V
    planes with rows of `stride / 2`) as a BGR image. The colour matters: on the developers' frames the
    detector found 96% of the faces on the Y plane alone and 99% with the chroma planes
    (scripts/lores_detection_report.py)."""
    import cv2

    stride, w2, h2 = array.shape[1], width // 2, height // 2
    chroma = array[height:].reshape(-1)
    plane = h2 * (stride // 2)
    u = chroma[:plane].reshape(h2, stride // 2)[:, :w2]
    v = chroma[plane : 2 * plane].reshape(h2, stride // 2)[:, :w2]
    # Packed into one zeroed-after-use buffer, without copies of its own on the way.
    i420 = np.empty(height * width + 2 * h2 * w2, np.uint8)
    i420[: height * width].reshape(height, width)[:] = array[:height, :width]
    i420[height * width : height * width + h2 * w2].reshape(h2, w2)[:] = u
    i420[height * width + h2 * w2 :].reshape(h2, w2)[:] = v
    try:
        return cv2.cvtColor(i420.reshape(height * 3 // 2, width), cv2.COLOR_YUV2BGR_I420)
    finally:
        i420.fill(0)


class Picamera2Camera(RetryingCamera):
    """Raspberry Pi camera. picamera2's "RGB888" arrays are B,G,R in memory: OpenCV's order, no swap."""

    name = "picamera2"

    def __init__(self, config: CameraConfig, ring_size: int, picamera2_module: Any, **kw: Any) -> None:
        super().__init__(config, ring_size, **kw)
        self._module = picamera2_module
        self._cam: Any = None

    def _open(self) -> None:
        try:
            cam = self._module.Picamera2()
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraError(f"cannot open the Pi camera (not connected or busy): {exc}") from None
        main = {"size": (self.config.width, self.config.height), "format": "RGB888"}
        lores = None
        if self.config.lores_width:
            # YUV420 is the lores format every Pi model supports; only its Y plane is used for detection.
            lores = {"size": (self.config.lores_width, self.config.lores_height), "format": "YUV420"}
        try:
            # AeMeteringMode 0 = CentreWeighted: the face sits in the middle; FaceExposure closes the loop
            # on the face itself through ExposureValue.
            controls = {"FrameRate": self.config.fps, "AeMeteringMode": 0, "ExposureValue": 0.0}
            video = cam.create_video_configuration(main=main, lores=lores, controls=controls, buffer_count=4)
            cam.configure(video)
            cam.start()
        except Exception as exc:  # noqa: BLE001 - picamera2 and libcamera raise many types; all mean "no camera"
            cam.close()
            raise CameraError(f"cannot start the Pi camera: {exc.__class__.__name__}: {exc}") from None
        self._cam = cam

    def _read(self) -> Frame:
        try:
            with self._cam.captured_request() as request:
                image = request.make_array("main")
                lores = request.make_array("lores") if self.config.lores_width else None
        except Exception as exc:  # noqa: BLE001 - any capture failure is a dropped frame, reported by type only
            raise CameraError(f"capture failed: {exc.__class__.__name__}") from None
        if image.ndim != 3 or image.shape[2] < 3:
            raise CameraError("corrupt frame (unexpected shape)")
        # Both arrays are copies picamera2 made for us: copied on into the ring and the detector's image, then
        # zeroed, so no frame outlives its use in memory the ring does not own.
        try:
            detect = None
            if lores is not None:
                detect = yuv420_to_bgr(lores, self.config.lores_width, self.config.lores_height)
            return self._store(image[..., :3], detect)
        finally:
            image.fill(0)
            if lores is not None:
                lores.fill(0)

    def _close_device(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None

    def exposure_controls(self) -> Picamera2Exposure | None:
        return Picamera2Exposure(self) if self._cam is not None else None


class Picamera2Exposure:
    """libcamera's ExposureValue (stops) on the running camera; its AE meters centre-weighted (faces sit there)."""

    def __init__(self, camera: Picamera2Camera) -> None:
        self._camera = camera

    def set_exposure_value(self, ev: float) -> None:
        cam = self._camera._cam
        if cam is not None:  # reopened or closed meanwhile: the next frame's loop sets it again
            cam.set_controls({"ExposureValue": float(ev)})
