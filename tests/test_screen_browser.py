"""The door screen as a person at the door sees it, in headless Chromium at 800x480 (the official 7" display)
and 1920x1080 (an HDMI monitor), through whole replayed passes with the real pipeline and identity:

- a live person (a clip that turns and blinks) enrolled in the gallery: idle -> positioning -> each challenge
  step -> checking -> "Welcome, <name>" -> idle;
- the same person with a gallery that does not hold them: "Not recognised — please use <alternative>";
- a photo walking up (the demo replay): "Move closer" while the face is small, then the challenge, then
  "Not let through: <reason>";
- the same walk-up in the dark: "Too dark — face the light", and the rejection says what to fix.

Every page state is read back (the words must be exactly what device/screen/words.py says for the view; text
at least 32 px at 800x480, nothing outside the screen, white on black) and saved as a screenshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.screen.catalogue import Catalogue
from device.screen.state import View
from device.screen.words import words
from tests.screen_rig import ALTERNATIVE, SIZES, DoorRig, Enrolled, artefacts, embedding_of
from tests.vision_helpers import model_store

CLIP = "video/sadtalker/st_aoc_talking_blinks.mp4"  # a talking head that blinks and turns: passes both steps
NAME = "Ana Ortiz"
LATENCIES: list[float] = []


def clip_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield index / fps, image
            index += 1
    finally:
        capture.release()


def demo_frames(gain: float = 1.0) -> Iterator[tuple[float, np.ndarray]]:
    from device.vision.demo import demo_frames as frames

    fps = 15.0
    for i, image in enumerate(frames(fps)):
        yield (
            i / fps,
            np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8) if gain != 1.0 else image,
        )


@pytest.fixture(scope="module")
def store():
    return model_store()


@pytest.fixture(scope="module")
def person(shared_data, store) -> np.ndarray:
    frames = list(clip_frames(shared_data / CLIP))[:30]
    return embedding_of(store, frames)


def _pages_are_legible(rig: DoorRig) -> None:
    """Every look at every page: the size it should be, text >= 32 px at 800x480, inside the screen, white on
    black; and every view it rendered worded exactly as words.py words it."""
    cat = Catalogue(rig.language)
    assert rig.shots, "the pages were never looked at"
    for shot in rig.shots:
        page = shot.page
        assert tuple(page["viewport"]) == shot.size
        assert page["min_font_px"] >= 32, (shot.png.name, page["min_font_px"])
        assert not page["overflow"], f"{shot.png.name}: text outside the screen"
        assert all(
            c.startswith(("rgb(255, 255, 255)", "rgb(208, 208, 208)", "rgb(0, 0, 0)"))
            for c in page["colours"]
        )
        image = cv2.imread(str(shot.png))
        assert image is not None and image.shape[:2] == (shot.size[1], shot.size[0])
    for size in SIZES:
        for seen in rig.history(size):
            fields = {k: v for k, v in seen["view"].items()}
            expected = words(View(**fields), cat, ALTERNATIVE)
            assert seen["words"]["headline"] == expected.headline, seen
            assert (seen["words"].get("before") or None) == expected.before
            assert (seen["words"].get("detail") or None) == expected.detail
            assert (seen["words"].get("banner") or None) == expected.banner
            if seen["latency_ms"] is not None and seen["view"]["screen"] != "positioning":
                LATENCIES.append(seen["latency_ms"])  # views a prompt made (positioning follows the guides)


def _screens(rig: DoorRig, size: tuple[int, int]) -> list[str]:
    return [seen["view"]["screen"] for seen in rig.history(size)]


def _compress(items: list[str]) -> list[str]:
    return [x for i, x in enumerate(items) if i == 0 or items[i - 1] != x]


def test_a_live_person_in_the_gallery_is_welcomed_by_name(shared_data, store, person, tmp_path) -> None:
    rig = DoorRig("welcome", store, tmp_path, gallery=[Enrolled("ana", NAME, person)])
    with rig:
        rig.run(clip_frames(shared_data / CLIP))
        _pages_are_legible(rig)
        steps = [p.step for p in rig.prompts if p.state == "prompt"]
        assert len(steps) == 2 and set(steps) - {"blink"} <= {"turn_left", "turn_right"} and "blink" in steps
        for size in SIZES:
            history = rig.history(size)
            screens = _compress(_screens(rig, size))
            assert screens == ["idle", "positioning", "challenge", "checking", "result", "idle"], screens
            challenge = [h for h in history if h["view"]["screen"] == "challenge"]
            assert [h["view"]["step"] for h in challenge] == steps
            assert [h["view"]["step_index"] for h in challenge] == [1, 2]
            assert challenge[0]["words"]["headline"] in (
                "Please blink",
                "Turn your head slowly to your left",
                "Turn your head slowly to your right",
            )
            result = next(h for h in history if h["view"]["screen"] == "result")
            assert result["words"]["headline"] == f"Welcome, {NAME}"
    shots = {(s.size, s.page["screen"]) for s in rig.shots}
    for size in SIZES:
        assert {(size, "idle"), (size, "challenge"), (size, "result")} <= shots
    challenge_shots = [s for s in rig.shots if s.page["screen"] == "challenge"]
    assert all(
        s.page["step"].startswith("Step ") and s.page["countdown"].endswith("s left") for s in challenge_shots
    )
    assert any(s.page["face_points"] >= 6 for s in challenge_shots), "the face guide was never drawn"


def test_a_live_stranger_is_sent_to_the_alternative(shared_data, store, tmp_path) -> None:
    stranger = np.random.default_rng(7).normal(size=128).astype(np.float32)
    stranger /= np.linalg.norm(stranger)
    rig = DoorRig("unknown", store, tmp_path, gallery=[Enrolled("someone", "Some One", stranger)])
    with rig:
        rig.run(clip_frames(shared_data / CLIP))
        _pages_are_legible(rig)
        for size in SIZES:
            result = [h for h in rig.history(size) if h["view"]["screen"] == "result"]
            assert [h["words"]["headline"] for h in result] == [f"Not recognised — please use {ALTERNATIVE}"]
    assert any(s.page["icon"] == "unknown" for s in rig.shots)


def test_a_photo_walking_up_is_asked_closer_then_not_let_through(store, tmp_path) -> None:
    # A site whose camera sees faces large at the door wants 120 px: the walk-up starts at 83 px.
    rig = DoorRig("rejected", store, tmp_path, min_face_px=120)
    with rig:
        rig.run(demo_frames())
        _pages_are_legible(rig)
        for size in SIZES:
            history = rig.history(size)
            hints = [h["view"].get("hint") for h in history if h["view"]["screen"] == "positioning"]
            assert "hint.closer" in hints, hints  # the face is small at first: "Move closer"
            result = [h for h in history if h["view"]["screen"] == "result"]
            assert len(result) == 1 and result[0]["view"]["outcome"] == "result.rejected"
            reason = result[0]["view"]["reason"]
            assert reason in ("liveness.no_turn", "liveness.no_blink", "liveness.planar")
            assert result[0]["words"]["headline"] == "Not let through: " + Catalogue("en").text(reason)
            assert _compress(_screens(rig, size))[-2:] == ["result", "idle"]
    assert any(s.page["message"] == "Move closer" for s in rig.shots)
    assert any(
        s.page["icon"] == "no" and s.page["message"].startswith("Not let through: ") for s in rig.shots
    )


def test_a_face_in_the_dark_is_told_to_face_the_light(store, tmp_path) -> None:
    rig = DoorRig("dark", store, tmp_path, language="en")
    with rig:
        rig.run(demo_frames(gain=0.08))  # too dark even for the camera-relative gate
        _pages_are_legible(rig)
        for size in SIZES:
            history = rig.history(size)
            hints = {h["view"].get("hint") for h in history if h["view"]["screen"] == "positioning"}
            assert "hint.light" in hints, hints
            result = [h for h in history if h["view"]["screen"] == "result"]
            assert result and result[-1]["view"]["reason"] == "track.never_good_enough"
            assert result[-1]["words"]["detail"] == "Too dark — face the light"
    assert any(s.page["message"] == "Too dark — face the light" for s in rig.shots)


def test_the_screen_speaks_the_terminals_language(store, tmp_path) -> None:
    rig = DoorRig("deutsch", store, tmp_path, language="de", min_face_px=120)
    with rig:
        rig.run(demo_frames())
        _pages_are_legible(rig)
    said = {s.page["message"] for s in rig.shots}
    assert "Kommen Sie näher" in said and any(m.startswith("Kein Zutritt: ") for m in said), said


def test_enrolment_at_the_door_and_a_retried_step(store, tmp_path) -> None:
    """States this branch's replays do not reach, driven by the prompts that make them: an enrolment at the
    door (the banner over the screens, then its outcome) and a failed step asked again (issue 21's retry)."""
    from device.contracts import FaceGuide, Prompt

    rig = DoorRig("enrol-retry", store, tmp_path)
    with rig:
        rig.door.sink.set_names({"cy": "Cy Example"}.get)
        rig.publish(Prompt(0, "feedback", None, 0, 0, 0.0, "enrol.started", 0.0, {"subject": "cy"}))
        guide = FaceGuide(5, 0.1, (0.35, 0.2, 0.65, 0.7), tuple((0.4 + i / 200, 0.3) for i in range(49)), ())
        for t in (0.1, 0.2):
            rig.t = t
            rig.guide(guide)
        rig.publish(Prompt(5, "prompt", "turn_right", 1, 2, 4.0, "challenge.turn_right", 0.3))
        rig.publish(
            Prompt(
                5, "retry", None, 1, 2, 0.0, "challenge.retry", 4.4, {"reason": "liveness.no_turn", "try": 2}
            )
        )
        rig.publish(Prompt(5, "prompt", "blink", 1, 2, 3.0, "challenge.blink", 5.0))
        rig.publish(Prompt(5, "feedback", None, 0, 0, 0.0, "enrol.done", 6.0, {"subject": "cy"}))
        _pages_are_legible(rig)
        said = [s.page for s in rig.shots if s.size == (800, 480)]
    assert (
        said[1]["message"] == "Enrolment for Cy Example: look at the camera" and said[1]["screen"] == "idle"
    )
    assert (
        said[2]["banner"] == "Enrolment for Cy Example: look at the camera"
        and said[2]["screen"] == "positioning"
    )
    retry = [p for p in said if p["screen"] == "challenge" and p["message"] == "Let's try again"]
    assert retry, said
    fresh = next(p for p in said if p["message"] == "Please blink")
    assert fresh["before"] == "Let's try again" and fresh["countdown"].endswith("s left")
    assert (
        said[-1]["screen"] == "enrol" and said[-1]["message"] == "Enrolment done" and said[-1]["banner"] == ""
    )


def test_latency_report() -> None:
    """Prompt issued -> painted in the browser, over every view of the passes above (written as an artefact;
    the target, <= 100 ms, is measured under load by scripts/benchmark_screen.py)."""
    if not LATENCIES:
        pytest.skip("no pass ran")
    values = np.asarray(LATENCIES)
    report = {
        "views": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "max_ms": round(float(values.max()), 1),
    }
    (artefacts() / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    assert values.min() >= 0
    assert report["p50_ms"] < 1000, report  # an unbuffered channel: anything near a second is a bug
