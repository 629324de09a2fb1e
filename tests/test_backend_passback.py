"""Anti-passback across doors on the backend: signed event.access messages from two terminals (an entrance and
an exit) become passages in its store (SQLite and PostgreSQL), once each however often they are delivered;
two entries without an exit are reported as they arrive and by `faceonly backend passback`."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from device.cli import main
from device.privacy.signing import Signer
from device.transport.envelope import envelope
from faceonly_backend.ingest import Ingest, Passed, Quarantined
from faceonly_backend.passback import Passage, PassageLog, violations
from faceonly_backend.store import Store
from tests.access_parts import new_signer
from tests.api_schemas import errors
from tests.postgres import Postgres


def access_event(
    signer: Signer, terminal: str, door: str, direction: str | None, at: float, **changes
) -> bytes:
    part = {
        "door": door, "mode": "credential", "direction": direction, "decision": "granted", "reason": None,
        "subject": "ann", "credential": "badge", "factors": {"badge": "passed"}, "face": None, "pass_id": None,
        "attendance": True, "gate": "opened", "policy_version": 3, "decided_at": at, **changes,
    }  # fmt: skip
    payload = signer.sign(envelope("event.access", terminal, {"access": part}, ttl_s=86_400))
    assert errors(payload) == []
    return json.dumps(payload).encode()


def P(door: str, direction: str, at: float, subject: str = "ann") -> Passage:
    return Passage(str(uuid.uuid4()), "t", door, direction, subject, at)


def test_consecutive_passages_the_same_way_are_violations() -> None:
    assert violations([P("a", "in", 1), P("b", "out", 2), P("a", "in", 3)]) == []
    found = violations([P("a", "in", 1), P("b", "in", 2), P("c", "out", 3), P("c", "out", 4)])
    assert [v.kind for v in found] == ["entry_without_exit", "exit_without_entry"]
    assert (found[0].first.door, found[0].second.door) == ("a", "b")
    assert violations([P("a", "in", 1), P("a", "in", 2, subject="bo")]) == []  # two people


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path: Path):
    if request.param == "sqlite":
        yield str(tmp_path / "backend.sqlite")
    else:
        with Postgres() as pg:
            yield pg.url


def test_signed_decisions_from_two_doors_are_reconciled(db: str, tmp_path: Path) -> None:
    entrance, exit_ = new_signer(), new_signer()
    keys = {"t-in": entrance.public_key, "t-out": exit_.public_key}
    pinned = {k: base64.b64encode(v).decode() for k, v in keys.items()}
    ingest = Ingest("faceonly", lambda: pinned, None, None)
    store = Store(db)
    log = PassageLog(store)

    def deliver(terminal: str, raw: bytes) -> list:
        verdict = ingest.handle(f"faceonly/v1/dev/{terminal}/event/access", raw, 1_700_000_100.0)
        assert isinstance(verdict, Passed), verdict
        return log.record([verdict.passage] if verdict.passage else [])

    first = access_event(entrance, "t-in", "main", "in", 1_700_000_000.0)
    assert deliver("t-in", first) == []
    assert deliver("t-in", first) == []  # redelivered: stored once
    assert deliver("t-out", access_event(exit_, "t-out", "lobby", "out", 1_700_000_010.0)) == []
    assert deliver("t-in", access_event(entrance, "t-in", "main", "in", 1_700_000_020.0)) == []
    # In again through the entrance, its own period forgave it; nobody went out in between:
    found = deliver("t-in", access_event(entrance, "t-in", "main", "in", 1_700_000_030.0))
    assert [v.kind for v in found] == ["entry_without_exit"]
    # Not passages: refused, a door both ways with no direction chosen, a gate that could not open.
    assert (
        deliver("t-in", access_event(entrance, "t-in", "main", "in", 1_700_000_040.0, decision="refused"))
        == []
    )
    assert deliver("t-in", access_event(entrance, "t-in", "side", None, 1_700_000_050.0)) == []
    assert (
        deliver("t-in", access_event(entrance, "t-in", "main", "in", 1_700_000_060.0, gate="dropped")) == []
    )
    assert len(log.passages()) == 4
    forged = access_event(
        exit_, "t-in", "main", "in", 1_700_000_070.0
    )  # the exit's key on the entrance's topic
    verdict = ingest.handle("faceonly/v1/dev/t-in/event/access", forged, 1_700_000_100.0)
    assert isinstance(verdict, Quarantined) and verdict.reason == "forged"
    store.close()
    assert main(["backend", "passback", "--db", db, "--state-dir", str(tmp_path / "b")]) == 1
    assert (
        main(["backend", "passback", "--db", db, "--state-dir", str(tmp_path / "b"), "--since", "1700000025"])
        == 0
    )


def test_a_credentials_pass_is_on_the_timesheet_a_faces_only_once_and_a_refusal_only_if_counted() -> None:
    """People who use a badge, PIN or pass instead of the face (invariant 6) must be on the attendance report
    too: a credential's granted decision becomes an attendance record; a face-only decision does not (its face
    event is the record); a refusal only where the door still counts it (outside schedule: a punch, with the
    reason the door stayed shut)."""
    signer = new_signer()
    pinned = {"t-in": base64.b64encode(signer.public_key).decode()}
    ingest = Ingest("faceonly", lambda: pinned, None, None)
    topic = "faceonly/v1/dev/t-in/event/access"

    def records(**changes) -> list:
        verdict = ingest.handle(
            topic, access_event(signer, "t-in", "main", "in", 1_700_000_000.0, **changes), 1e9 * 2
        )
        assert isinstance(verdict, Passed), verdict
        return [a.record for a in verdict.attendance]

    (badge,) = records()
    assert (badge.subject, badge.decision, badge.match_source, badge.terminal) == (
        "ann",
        "accepted",
        "credential",
        "t-in",
    )
    face_only = {"mode": "face", "credential": None, "factors": {"face": "passed"}}
    assert records(**face_only) == []
    schedule = {"code": "access.outside_schedule", "text": "outside schedule"}
    (late,) = records(decision="refused", reason=schedule, gate="shut", attendance=True)
    assert late.decision == "accepted" and late.reasons == (
        schedule,
    )  # a punch; the reason says the door stayed shut
    assert records(decision="refused", reason=schedule, gate="shut", attendance=False) == []
