"""The demo replay: scikit-image's astronaut photo (Eileen Collins, NASA, public domain) walking up to the camera.

The photo is moved and zoomed over a plain background as if the person walked up and then stood in front of
the terminal. It is a photo: it cannot turn its head in 3D or blink, so the default challenge policy
rejects it, and the demo shows exactly that (with the reasons). Generated at setup, deterministic.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from device.infra.paths import demo_dir
from device.vision.replay import MANIFEST_FORMAT, MANIFEST_NAME

SIZE = (640, 480)  # width, height
# Head and shoulders in the 512x512 photo (x0, y0, x1, y1).
PERSON = (96, 0, 416, 380)


def _background(rng: np.random.Generator) -> np.ndarray:
    w, h = SIZE
    ramp = np.linspace(150, 110, h, dtype=np.float32)[:, None, None]
    wall = np.broadcast_to(ramp, (h, w, 3)) * np.array([1.0, 0.97, 0.92], np.float32)
    noise = rng.normal(0, 2.0, (h, w, 3)).astype(np.float32)
    return np.clip(wall + noise, 0, 255).astype(np.uint8)


def _person() -> np.ndarray:
    from skimage import data

    rgb = data.astronaut()
    x0, y0, x1, y1 = PERSON
    return np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1])


# The stand outlasts a failed step, its retry and their pauses (~13 s at worst), so the photo is turned
# away by the challenge rather than by the replay's end.
WALK_S, STAND_S = 2.5, 11.0


def _frame_count(fps: float, walk_s: float = WALK_S, stand_s: float = STAND_S) -> tuple[int, int]:
    return round(walk_s * fps), round(stand_s * fps)


def demo_frames(fps: float = 15.0, walk_s: float = WALK_S, stand_s: float = STAND_S) -> list[np.ndarray]:
    """BGR frames: the photo grows from far away to close, drifting to the centre, then stands (small sway)."""
    rng = np.random.default_rng(7)
    background = _background(rng)
    person = _person()
    ph, pw = person.shape[:2]
    w, h = SIZE
    n_walk, n_stand = _frame_count(fps, walk_s, stand_s)
    frames = []
    for i in range(n_walk + n_stand):
        walk = min(1.0, i / max(1, n_walk - 1))
        ease = walk * walk * (3 - 2 * walk)
        height = (0.35 + 0.75 * ease) * h  # person's crop height in the frame
        scale = height / ph
        sway = 0.0 if i < n_walk else 4.0 * np.sin((i - n_walk) / fps * 2.0)
        cx = (0.72 - 0.22 * ease) * w + sway
        top = (0.42 - 0.40 * ease) * h
        matrix = np.array([[scale, 0, cx - scale * pw / 2], [0, scale, top]], np.float32)
        frame = background.copy()
        warped = cv2.warpAffine(person, matrix, SIZE, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), matrix, SIZE, flags=cv2.INTER_LINEAR)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        frame = (warped * alpha + frame * (1 - alpha)).astype(np.uint8)
        noise = rng.normal(0, 1.5, frame.shape).astype(np.float32)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return frames


def demo_is_complete(out: Path, fps: float = 15.0) -> bool:
    """Whether `out` already holds the demo replay at this frame rate: its replay.json lists the frames this
    generator makes, at their times, and every frame file is there (deterministic, so nothing else differs)."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
        frames = manifest["frames"]
        expected = sum(_frame_count(fps))
        return (
            manifest.get("format") == MANIFEST_FORMAT
            and len(frames) == expected
            and all(f["t"] == round(i / fps, 6) for i, f in enumerate(frames))
            and all((out / f["file"]).is_file() and (out / f["file"]).stat().st_size > 0 for f in frames)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def make_demo(out: Path | None = None, fps: float = 15.0) -> Path:
    """Write the demo replay folder (JPEG frames + replay.json, default device.infra.paths.demo_dir()); replaces an
    earlier demo at `out`."""
    out = Path(out) if out is not None else demo_dir()
    if out.exists():
        if not (out / MANIFEST_NAME).is_file():
            raise FileExistsError(f"{out} exists and is not a replay folder; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    entries = []
    for i, frame in enumerate(demo_frames(fps)):
        name = f"{i:05d}.jpg"
        if not cv2.imwrite(str(out / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise OSError(f"could not write {out / name}")
        entries.append({"file": name, "t": round(i / fps, 6)})
    manifest = {"format": MANIFEST_FORMAT, "frames": entries}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out
