"""Why a face was accepted or rejected: a stable machine-readable code next to the human text.

A `Reason` is its text wherever it is shown, logged or compared (it is a `str`), and carries its
`code`, which is what a backend should act on: the text may be reworded, the code never is. Every
code is listed in CODES with what it means; the event schema's enum is generated from it.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    "quality.too_small": "the face is smaller than vision.quality.min_face_px",
    "quality.cut_off": "the face is cut off by the frame edge",
    "quality.yaw": "the head is turned sideways beyond vision.quality.max_yaw_deg",
    "quality.pitch": "the head is tilted up or down beyond vision.quality.max_pitch_deg",
    "quality.roll": "the head is tilted sideways beyond vision.quality.max_roll_deg",
    "quality.outside_frame": "the face box lies outside the frame",
    "quality.blurred": "the face is blurred (sharpness below vision.quality.min_sharpness)",
    "quality.too_dark": "the face is too dark for its landmarks to be found, even after exposure normalisation",
    "quality.overexposed": "the face is overexposed (brightness above vision.quality.max_brightness)",
    "quality.clipped": "too many face pixels are at black or white",
    "quality.low_contrast": "too little contrast is left in the face after exposure normalisation",
    "quality.no_landmarks": "the face mesh is not confident it sees a face (vision.quality.min_mesh_presence)",
    "quality.eyes_too_close": "the inter-ocular distance is below vision.quality.min_eye_distance_px",
    "track.left": "the person left before a decision was made",
    "track.timeout": "no decision within vision.max_decision_s",
    "track.never_good_enough": "no frame of the track passed the quality gate",
    "track.stage_failed": "a processing stage raised an error on this track: it was dropped (health: stage_failures)",
    "liveness.off": "liveness is off: no check was made",
    "liveness.passive": "passive liveness only: a photo or replay can pass",
    "liveness.replay_risk": "the replay-risk score reached vision.liveness.replay_risk_threshold",
    "liveness.replay_risk_flag": "passed, but flagged: the replay-risk score is high",
    "liveness.step_up": "one more challenge step was asked because the replay-risk score is high",
    "liveness.no_blink": "no blink within the step's time limit",
    "liveness.no_turn": "no head turn within the step's time limit",
    "liveness.too_early": "the prompted motion began before the prompt could have been seen (onset window)",
    "liveness.too_late": "the prompted motion began too long after the prompt (onset window)",
    "liveness.retry": "a step failed and was asked again with a fresh random step",
    "liveness.planar": "the head turn is explained by a plane (a photo moved, not a head turning)",
    "liveness.blink_passed": "the blink step passed",
    "liveness.turn_left_passed": "the turn-left step passed",
    "liveness.turn_right_passed": "the turn-right step passed",
    "liveness.passed": "the challenge passed",
    "liveness.not_finite": "a liveness measure was not a finite number (fail closed)",
    "liveness.no_prompt_channel": "no prompt channel: the terminal runs without a challenge",
    # Door decisions (device/access): why a door stayed shut. Never a PIN, a badge number or a name.
    "access.outside_schedule": "outside schedule: no group of the person may pass this door at this time",
    "access.not_allowed": "no group of the person may pass this door",
    "access.unknown_person": "the door policy does not know this person",
    "access.not_recognised": "the face is not in the gallery (1:N found nobody above the threshold)",
    "access.face_mismatch": "the face does not match the person the credential names (1:1)",
    "access.no_face_template": "the person the credential names has no face template: this door needs the face",
    "access.claim_timeout": "no live face followed the credential in time",
    "access.credential_unknown": "the badge, number or QR code is not known here",
    "access.pin_wrong": "wrong PIN",
    "access.pin_locked": "too many wrong PINs for this number: the keypad refuses it for a while",
    "access.mode": "this door does not take this way in (its mode)",
    "access.pass_forged": "the QR code is not signed by a pass key of the door policy",
    "access.pass_malformed": "the QR code is not a faceonly pass",
    "access.pass_not_yet_valid": "the pass is not valid yet",
    "access.pass_expired": "the pass has expired",
    "access.pass_other_door": "the pass is not for this door",
    "access.pass_replayed": "the pass was used up already (replayed)",
    "access.anti_passback": "already in: a second entry without an exit in between",
    "access.no_policy": "the terminal holds no door policy for this door",
}


class Reason(str):
    """The human text (the str value) with its stable `code` (a key of CODES)."""

    code: str

    def __new__(cls, code: str, text: str) -> Reason:
        if code not in CODES:
            raise ValueError(f"unknown reason code {code!r}")  # a new reason needs its code listed
        self = super().__new__(cls, text)
        self.code = code
        return self
