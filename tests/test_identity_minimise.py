"""Data minimisation: a face matched on the terminal leaves as subject id + score, with no biometric at all
(identity.send_embedding / send_thumbnail = unknown_only, the default); the privacy report says so."""

from __future__ import annotations

import math

import pytest

from device.config import parse_config
from device.identity.runtime import MatchResult
from device.privacy.protector import build_protector, releases
from tests.test_privacy_protector import observation  # noqa: F401  (fixture)

MATCH = MatchResult("ann", 0.97, 0.05, 0.95, 3, "Ann")
UNKNOWN = MatchResult(None, 0.80, 0.01, 0.95, 3, None)


def _protector(tmp_path, **identity):
    cfg = parse_config({"service": {"state_dir": str(tmp_path)}, "identity": identity})
    return build_protector(cfg, tmp_path)


@pytest.mark.parametrize(
    "policy,matched,sent",
    [
        ("unknown_only", True, False),
        ("unknown_only", False, True),
        ("always", True, True),
        ("never", False, False),
    ],
)
def test_release_policy(policy, matched, sent):
    assert releases(policy, matched) is sent


def test_matched_face_leaves_without_biometric(tmp_path, observation):  # noqa: F811
    body = _protector(tmp_path).protect(observation, MATCH)
    assert body["match"] == {
        "subject": "ann",
        "score": 0.97,
        "margin": 0.05,
        "threshold": 0.95,
        "gallery_version": 3,
        "probe": "flip",  # which threshold curves the score is of; not personal
    }
    bio = body["biometric"]
    assert "embedding" not in bio and "thumbnail" not in bio and "sealed" not in bio and "embedder" not in bio
    assert "Ann" not in str(body)  # the display name is for the gate's screen only


def test_unknown_face_carries_its_embedding_and_subject_null(tmp_path, observation):  # noqa: F811
    body = _protector(tmp_path).protect(observation, UNKNOWN)
    assert body["match"]["subject"] is None and "embedding" in body["biometric"]
    assert "thumbnail" in body["biometric"]


def test_always_and_never(tmp_path, observation):  # noqa: F811
    always = _protector(tmp_path / "a", send_embedding="always", send_thumbnail="never").protect(
        observation, MATCH
    )
    assert "embedding" in always["biometric"] and "thumbnail" not in always["biometric"]
    never = _protector(tmp_path / "n", send_embedding="never", send_thumbnail="never").protect(
        observation, UNKNOWN
    )
    assert "embedding" not in never["biometric"] and "thumbnail" not in never["biometric"]


def test_no_gallery_no_match_field(tmp_path, observation):  # noqa: F811
    body = _protector(tmp_path).protect(observation)
    assert "match" not in body and "embedding" in body["biometric"]


def test_non_finite_scores_are_null_in_the_event():
    assert MatchResult(None, math.nan, math.nan, math.nan, 1, None).as_event()["score"] is None


def test_privacy_report_knows_the_identity_settings(tmp_path):
    report = _protector(tmp_path, gallery_public_key_file=str(tmp_path / "g.pub")).report()
    ident = report["sends"]["identity"]
    assert ident["enabled"] and ident["send_embedding"] == "unknown_only"
    assert "only for faces it does not recognise" in report["text"]
    assert report["keeps"]["gallery"]["file"].endswith("gallery.sealed")
    off = _protector(tmp_path / "off").report()
    assert not off["sends"]["identity"]["enabled"] and "does not identify" in off["text"]


def _event(tmp_path, observation, match, **identity):  # noqa: F811
    from device.transport.envelope import encode, envelope

    protector = _protector(tmp_path, **identity)
    return encode(protector.sign(envelope("event.face", "t1", protector.protect(observation, match))))


def test_audit_checks_that_matched_faces_carry_no_biometric(tmp_path, observation):  # noqa: F811
    from device.privacy.audit import AuditPolicy, audit_result, inspect_message

    topic = "faceonly/v1/dev/t1/event/face"
    policy = AuditPolicy(identity_send="unknown_only")
    good = [
        inspect_message(topic, _event(tmp_path / "g", observation, MATCH), False, policy),
        inspect_message(topic, _event(tmp_path / "u", observation, UNKNOWN), False, policy),
    ]
    result = audit_result(good, policy)
    rule = next(v for v in result["verdicts"] if v["rule"] == "identity_minimised")
    assert rule["passed"] is True and "1 matched" in rule["detail"]
    leaky = _event(tmp_path / "l", observation, MATCH, send_embedding="always", send_thumbnail="always")
    result = audit_result([inspect_message(topic, leaky, False, policy)], policy)
    rule = next(v for v in result["verdicts"] if v["rule"] == "identity_minimised")
    assert rule["passed"] is False and "biometric.embedding" in rule["detail"] and result["result"] == "fail"
