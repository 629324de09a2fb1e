"""Enrolment outcomes on known observations: template, timeout, no live face, two faces; argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.contracts import FaceObservation
from device.identity.enrolment import Enrolment, EnrolRequest, check_enrol_args
from device.identity.gallery import ID_PATTERN


def _obs(tid: int, decision: str = "accepted", t0: float = 0.0, t1: float = 1.0, **kw) -> FaceObservation:
    emb = np.ones(128, np.float32) / np.sqrt(128) if decision == "accepted" else None
    base = dict(quality={}, liveness={"planarity": 0.1}, reasons=(), embedding=emb)
    base.update(kw)
    return FaceObservation(tid, decision, t0, t1, t1, (0, 0, 10, 10), **base)  # type: ignore[arg-type]


def _enrolment() -> Enrolment:
    return Enrolment(EnrolRequest("ann", "Ann", deadline=10.0))


def test_live_face_gives_the_template():
    out = _enrolment().offer([_obs(1)])
    assert out.ok and out.observation.track_id == 1


def test_two_faces_at_once_refuse():
    e = _enrolment()
    assert (
        e.offer([_obs(2, "rejected", 0.5, 1.5, reasons=("never good enough: small",), liveness={})]) is None
    )
    out = e.offer([_obs(1, t0=0.0, t1=1.0)])
    assert not out.ok and out.reason == "two_faces"


def test_failed_challenge_is_no_live_face_but_poor_quality_keeps_waiting():
    e = _enrolment()
    assert e.offer([_obs(1, "rejected", reasons=("never good enough: blur",), liveness={})]) is None
    out = e.offer([_obs(2, "rejected", 5.0, 6.0, reasons=("challenge failed: blink",))])
    assert not out.ok and out.reason == "no_live_face"


def test_timeout():
    e = _enrolment()
    assert e.expired(9.9) is None
    assert e.expired(10.0).reason == "timeout"


@pytest.mark.parametrize(
    "args,match",
    [
        ({}, "subject"),
        ({"subject": "../x"}, "subject"),
        ({"subject": "ann", "timeout_s": 0.1}, "timeout_s"),
        ({"subject": "ann", "timeout_s": True}, "timeout_s"),
        ({"subject": "ann", "display_name": 5}, "display_name"),
        ({"subject": "ann", "extra": 1}, "unknown"),
    ],
)
def test_bad_enrol_args(args, match):
    with pytest.raises(ValueError, match=match):
        check_enrol_args(args, 0.0, ID_PATTERN)


@given(
    st.dictionaries(
        st.sampled_from(["subject", "display_name", "timeout_s", "x"]),
        st.none() | st.text() | st.floats() | st.integers(),
    )
)
def test_enrol_args_parser_never_crashes(args):
    try:
        req = check_enrol_args(args, 100.0, ID_PATTERN)
    except ValueError:
        return
    assert 101.0 <= req.deadline <= 400.0
