"""Vision settings: frame source, detector, tracker, quality gate, liveness policy and event assembly.

Defaults are for a turnstile with the face 0.3-1.5 m from a 640x480 camera; liveness thresholds come from
the measurements in ../shared/LIVENESS.md and must be recalibrated on the terminal's own camera.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from device.config.base import Section, remote


class CameraConfig(Section):
    width: int = Field(1280, ge=160, le=4096, description="Main stream width (crops are cut from it).")
    height: int = Field(720, ge=120, le=3072, description="Main stream height.")
    fps: float = Field(15.0, gt=0, le=120, description="Requested frame rate.")
    lores_width: int = Field(
        0,
        ge=0,
        le=1920,
        description="picamera2 only: lores stream width used for detection (0 = detect on main).",
    )
    lores_height: int = Field(0, ge=0, le=1080, description="picamera2 only: lores stream height.")
    retry_initial_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="First wait before reopening a failed camera.",
        json_schema_extra=remote(live=False),
    )
    retry_max_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Longest wait between reopen attempts (backoff cap).",
        json_schema_extra=remote(live=False),
    )
    give_up_after_s: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="Raise SourceError after failing this long (0 = keep retrying forever).",
    )
    face_exposure: bool = Field(
        True,
        description="Meter exposure on the face: steer the camera's exposure value (picamera2) or exposure "
        "time and gain (V4L2, where offered) so the face sits at face_exposure_target. Replays: never.",
    )
    face_exposure_target: float = Field(
        115.0, ge=40, le=200, description="Mean grey level the face's exposure is steered to."
    )

    @model_validator(mode="after")
    def _lores_pair(self) -> CameraConfig:
        if (self.lores_width == 0) != (self.lores_height == 0):
            raise ValueError("lores_width and lores_height must both be 0 or both be set")
        if self.lores_width > self.width or self.lores_height > self.height:
            raise ValueError("the lores stream must not be larger than the main stream")
        if self.lores_width % 2 or self.lores_height % 2:
            raise ValueError("lores_width and lores_height must be even (the stream is YUV420)")
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("retry_initial_s must not exceed retry_max_s")
        return self


class TrackerConfig(Section):
    match_iou: float = Field(0.3, gt=0, lt=1, description="Least box IoU that continues a track.")
    max_centre_shift: float = Field(
        0.6,
        gt=0,
        le=3,
        description="Or: largest centre shift between frames, in face widths, that continues a track.",
    )
    max_missed_s: float = Field(0.7, gt=0, le=10, description="A track not seen for this long has ended.")
    min_frames_for_event: int = Field(
        3,
        ge=1,
        le=100,
        description="Tracks shorter than this end silently (detector flicker), counted in stats.",
    )


class QualityConfig(Section):
    min_face_px: int = Field(80, ge=16, le=1024, description="Least face box side in frame pixels.")
    min_sharpness: float = Field(
        12.0,
        ge=0,
        le=10000,
        description="Least variance of the Laplacian of the exposure-normalised face scaled to 112 px.",
    )
    min_contrast: float = Field(
        8.0, ge=0, le=128, description="Least grey-level standard deviation of the exposure-normalised face."
    )
    min_mesh_presence: float = Field(
        0.5, ge=0, le=1, description="Least face-mesh confidence (its face flag) for a usable frame."
    )
    min_eye_distance_px: float = Field(
        20.0, ge=0, le=1000, description="Least inter-ocular distance (mesh eye corners) in frame pixels."
    )
    dim_brightness: float = Field(
        70.0,
        ge=0,
        le=255,
        description="A face darker than this that the mesh cannot find is reported as too dark (with a hint).",
    )
    max_yaw_deg: float = Field(25.0, gt=0, le=90, description="Largest head yaw for a usable frame.")
    max_pitch_deg: float = Field(25.0, gt=0, le=90, description="Largest head pitch for a usable frame.")
    max_roll_deg: float = Field(25.0, gt=0, le=90, description="Largest head roll for a usable frame.")
    min_brightness: float = Field(
        20.0,
        ge=0,
        le=255,
        description="Mean grey level of the face below which no exposure normalisation recovers it (a dim but "
        "clear face above it is normalised and judged by the mesh).",
    )
    max_brightness: float = Field(215.0, ge=0, le=255, description="Largest mean grey level of the face.")
    max_clipped: float = Field(0.25, ge=0, le=1, description="Largest share of face pixels at 0 or 255.")
    face_margin: float = Field(
        0.2, ge=0, le=1, description="Face box must stay this share of its size inside frame."
    )

    @model_validator(mode="after")
    def _brightness_order(self) -> QualityConfig:
        if self.min_brightness >= self.max_brightness:
            raise ValueError("min_brightness must be below max_brightness")
        return self


class LivenessConfig(Section):
    policy: Literal["challenge", "passive", "off"] = Field(
        "challenge",
        description="challenge: prompted head turn (planarity) + blink; passive: no prompts, soft cues only "
        "(a photo can pass); off: no liveness (lab use only).",
    )
    steps: tuple[Literal["turn", "blink"], ...] = Field(
        ("turn", "blink"), min_length=1, max_length=4, description="Challenge steps, asked in random order."
    )
    seed: int | None = Field(
        None,
        ge=0,
        description="Fix the prompt order and turn direction (tests, replays); None = unpredictable.",
    )
    step_retries: int = Field(
        1,
        ge=0,
        le=3,
        description="A failed step is asked again this often (a fresh random step) before the "
        "challenge fails.",
    )
    prompt_delay_min_s: float = Field(
        0.3,
        ge=0,
        le=5,
        description="Shortest random pause before each prompt (its time cannot be predicted).",
    )
    prompt_delay_max_s: float = Field(
        1.2, ge=0, le=10, description="Longest random pause before each prompt."
    )
    prompt_rest_max_yaw_deg: float = Field(
        5.0,
        gt=0,
        le=30,
        description="A prompt waits until the head has rested: its yaw spread over the last 0.6 s within "
        "this (a head still settling after the last step would answer the next one too early).",
    )
    onset_min_s: float = Field(
        0.15,
        ge=0,
        le=2,
        description="A prompted motion that begins sooner than this after the prompt is anticipation (or a "
        "video that happened to move): the step fails.",
    )
    onset_max_s: float = Field(
        2.0,
        gt=0,
        le=10,
        description="A prompted motion that begins later than this after the prompt fails the step (a hand "
        "scrubbing a recording); see docs/pad-report.md for how it was measured.",
    )
    turn_onset_deg: float = Field(
        5.0, gt=0, le=20, description="A turn has begun once the yaw left its start pose by this much."
    )
    turn_time_s: float = Field(4.0, gt=0.5, le=20, description="Time limit for a head-turn prompt.")
    blink_time_s: float = Field(3.0, gt=0.5, le=20, description="Time limit for a blink prompt.")
    turn_min_deg: float = Field(
        18.0, ge=5, le=60, description="Least yaw change that counts as the prompted turn."
    )
    pair_min_deg: float = Field(
        12.0, ge=2, le=45, description="Least yaw difference between two frames used in a planarity pair."
    )
    planarity_threshold: float = Field(
        0.008,
        gt=0,
        le=0.2,
        description="Median homography residual / inter-ocular distance above which a head is 3D.",
    )
    min_planarity_pairs: int = Field(3, ge=1, le=100, description="Frame pairs needed to judge planarity.")
    blink_dip: float = Field(
        0.72, gt=0.2, lt=1, description="Eye opening below this share of baseline = closing."
    )
    blink_reopen: float = Field(
        0.8, gt=0.3, le=1.2, description="Reopened when back above this share of baseline."
    )
    blink_baseline_s: float = Field(0.5, gt=0.1, le=3, description="Length of the open-eye baseline window.")
    blink_max_closed_s: float = Field(
        0.4, gt=0.05, le=2, description="Longest dip that still counts as a blink."
    )
    blink_max_face_change: float = Field(
        0.08,
        gt=0,
        le=1,
        description="During a blink the face's proportions (eye line to lips / eye distance) may change this "
        "much at most: a photo pitched on cue squashes them with the eyes (real blinks: <= 3% on the blink "
        "video).",
    )
    iris_max_gap_s: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="While the blink step waits on open eyes, the iris model (2 invokes) may skip frames but "
        "never leaves a gap longer than this between two of its reads: the shortest blinks last about 0.1 s, "
        "so a longer gap can fall between a blink's closed frames. It runs on every frame while the eye "
        "opening dips (the mesh's eyelids, or the blink detector's own dip) and until the blink detector has "
        "its open-eye baseline. At the terminal's 15 fps this is every frame; at 24-30 fps every 2nd-3rd.",
    )
    iris_mesh_dip: float = Field(
        0.97,
        gt=0.5,
        le=1,
        description="The mesh's eyelid opening below this share of its recent median counts as a dip (the mesh "
        "moves far less than the iris model in a blink: 0.81-0.99 of baseline on the developers' clips).",
    )
    steady_max_yaw_deg: float = Field(20.0, gt=0, le=60, description="Blink frames must be this frontal.")
    steady_max_motion: float = Field(
        0.08, gt=0, le=1, description="Blink frames: largest nose shift per frame, in inter-ocular distances."
    )
    replay_risk_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Replay-risk score (0..1) at which the cue action applies; calibrate per camera.",
    )
    replay_risk_action: Literal["flag", "step_up", "reject"] = Field(
        "step_up", description="On high replay risk: flag the event, add a challenge step, or reject."
    )
    sharpness_ref: float = Field(
        0.06,
        gt=0,
        le=1,
        description="High-frequency energy share of a live face on this camera (cue calibration).",
    )
    calibration_min_passes: int = Field(
        5,
        ge=1,
        le=1000,
        description="Live passes learned before the replay cue counts as calibrated on this camera (until then "
        "it can step up, never reject).",
    )
    calibration_max_passes: int = Field(
        200, ge=5, le=10000, description="The live baseline keeps the newest this many passes."
    )
    calibration_learn: bool = Field(
        True, description="Successful challenge passes refine the camera's live baseline (state dir)."
    )
    passive_min_frames: int = Field(
        10, ge=1, le=200, description="passive/off: good frames needed before deciding."
    )

    @model_validator(mode="after")
    def _reopen_above_dip(self) -> LivenessConfig:
        if self.blink_reopen <= self.blink_dip:
            raise ValueError("blink_reopen must be above blink_dip")
        if self.prompt_delay_min_s > self.prompt_delay_max_s:
            raise ValueError("prompt_delay_min_s must not exceed prompt_delay_max_s")
        if self.onset_min_s >= self.onset_max_s:
            raise ValueError("onset_min_s must be below onset_max_s")
        return self


class VisionConfig(Section):
    source: str = Field(
        "replay:demo",
        min_length=1,
        description="picamera2 | v4l2:N | replay:PATH (replay:demo = the demo replay made at setup).",
    )
    replay_pace: Literal["recorded", "fast"] = Field(
        "recorded",
        description="Replays: play at the recorded timestamps, or as fast as frames are processed.",
    )
    ring_size: int = Field(4, ge=2, le=32, description="Preallocated frame buffers (zeroed on release).")
    detector: Literal["short_range", "full_range"] = Field(
        "short_range", description="BlazeFace variant: short range (< 2 m, turnstiles) or full range."
    )
    detector_min_score: float | None = Field(
        0.6,
        gt=0,
        lt=1,
        description="Detection score threshold (0.6: no false face on ../shared/data/negatives, LFW still found); "
        "None = the detector variant's own default.",
    )
    nms_iou: float = Field(0.3, gt=0, lt=1, description="Weighted-NMS IoU threshold.")
    embedder_runtime: Literal["litert", "onnxruntime"] = Field(
        "litert",
        description="What runs the face embedder: LiteRT, or ONNX Runtime on the same network, its weights "
        "exported bit for bit (models/embedder_dlib_resnet_u8.onnx; the embeddings match LiteRT's to an output "
        "step or two, so galleries and thresholds hold). "
        "ONNX Runtime needs the onnx extra and about 30 MB more memory; measured faster on x86_64 "
        "(docs/models.md), not yet on a Raspberry Pi.",
    )
    crop_margin: float = Field(
        0.25, ge=0, le=1, description="Margin around the face box of the crop handed to the privacy stage."
    )
    max_decision_s: float = Field(
        25.0,
        gt=1,
        le=120,
        description="A track still undecided after this long is rejected (one event); room for the "
        "challenge's pauses, one retry and one step-up.",
    )
    camera: CameraConfig = CameraConfig()
    tracker: TrackerConfig = TrackerConfig()
    quality: QualityConfig = QualityConfig()
    liveness: LivenessConfig = LivenessConfig()
