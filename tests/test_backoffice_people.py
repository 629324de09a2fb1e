"""Enrolment with checks, consent, corrections and removal, on the back office itself (real templates from the
shipped models; SQLite and PostgreSQL). The same face under two ids is refused naming the first; photos of two
people in one subject are refused; nothing is made into a template without a consent on record (gdpr);
"not this person" corrects the record, is audited, and that image never becomes a template; deactivating keeps
the records, erasing keeps them anonymised; retention purges with a receipt naming every terminal."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.config import ConfigError
from faceonly_backend.audit import Actor
from faceonly_backend.enrol import Details, DuplicateError, EnrolError, Override
from faceonly_backend.live import LiveEntry
from faceonly_backend.store import Record
from tests.office_parts import astronaut_photo, face_template, make_office, office_config, photo_folders

ROOT = Path(__file__).resolve().parent.parent
LFW = "verification/lfw/lfw-deepfunneled"
ADMIN, HR = Actor("alice", "admin"), Actor("bob", "hr")
CONSENT = {"person_name": "Ana Silva", "method": "paper"}


def _faceonly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _unknown_event(office, event_id: str, embedding=None, when: float | None = None) -> None:
    """An unknown face's event as ingest records it, with its embedding in the live view."""
    now = time.time() if when is None else when
    office.store.record(
        [Record(event_id, "gate-01", now, now, "accepted", None, 0.61, "backend", (), {}, 0.94)]
    )
    sha = office.gallery.embedder.sha256
    office.live.add(event_id, LiveEntry(None, b"{}", None, embedding, sha, None))


def _actions(office) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in reversed(office.audit.entries(100))]


def test_the_same_face_under_two_ids_is_refused_naming_the_first(tmp_path: Path) -> None:
    """As the issue's newcomer did: emp-0001 enrolled, then the same person again as emp-0042, from the
    command line; refused, naming emp-0001, and nothing changed. An admin's override with a reason takes it,
    audited."""
    db = str(tmp_path / "backend.sqlite")
    cfg = office_config(tmp_path, db, site={"profile": "none"})
    conf = tmp_path / "backend.toml"
    conf.write_text(
        f'[store]\ndb = "{db}"\n[identity]\ngallery_key_file = "{cfg.identity.gallery_key_file}"\n'
        '[site]\nprofile = "none"\n'
    )
    first = photo_folders(tmp_path / "first", {"emp-0001": [astronaut_photo(tmp_path / "p")]})
    second = photo_folders(tmp_path / "second", {"emp-0042": [astronaut_photo(tmp_path / "p", mirror=True)]})
    added = _faceonly("backend", "subjects", "add", "--config", str(conf), "--photos", str(first))
    assert added.returncode == 0 and "gallery version 1" in added.stdout, added.stderr
    again = _faceonly("backend", "subjects", "add", "--config", str(conf), "--photos", str(second))
    assert again.returncode == 1, again.stdout
    assert (
        "refused: emp-0042: duplicate: emp-0042 scores 0.99" in again.stderr
        and "against emp-0001" in again.stderr
    )
    office = make_office(tmp_path, db, site={"profile": "none"})
    assert [p.id for p in office.people.all()] == ["emp-0001"] and office.gallery.version == 1
    assert ("subject.enrol.refused", "emp-0042") in _actions(office)
    office.store.close()
    # Twins: an admin says so, with a reason; the override is in the audit log.
    forced = _faceonly(
        "backend",
        "subjects",
        "add",
        "--config",
        str(conf),
        "--photos",
        str(second),
        "--override-of",
        "emp-0001",
        "--reason",
        "twins, checked in person",
    )
    assert forced.returncode == 0 and "gallery version 2" in forced.stdout, forced.stderr
    office = make_office(tmp_path, db, site={"profile": "none"})
    entry = next(e for e in office.audit.entries(50) if e.action == "subject.enrol.override")
    assert entry.target == "emp-0042" and entry.details["other"] == "emp-0001"
    assert entry.details["reason"] == "twins, checked in person" and entry.actor.startswith("cli:")
    assert office.audit.verify().ok
    office.store.close()


def test_lfw_same_person_refused_other_person_taken_two_people_in_one_subject_refused(
    shared_data, database: str, tmp_path: Path
) -> None:
    lfw = shared_data / LFW
    blair = sorted((lfw / "Tony_Blair").glob("*.jpg"))
    silvio = sorted((lfw / "Silvio_Berlusconi").glob("*.jpg"))
    office = make_office(tmp_path, database, site={"profile": "none"})
    one = office.enrolment.from_photos(photo_folders(tmp_path / "a", {"emp-0001": blair[:3]}), ADMIN)
    assert one.added == ["emp-0001"] and one.refused == {}
    # Other photos of the same man, another id: refused naming emp-0001. Another man: taken.
    two = office.enrolment.from_photos(
        photo_folders(tmp_path / "b", {"emp-0042": blair[5:8], "emp-0002": silvio[:3]}), ADMIN
    )
    assert two.added == ["emp-0002"] and list(two.refused) == ["emp-0042"]
    assert "against emp-0001" in two.refused["emp-0042"] and [c.other for c in two.clashes] == ["emp-0001"]
    # Two men's photos in one subject: refused as several people, naming the groups of photos.
    three = office.enrolment.from_photos(
        photo_folders(tmp_path / "c", {"emp-0003": [*blair[10:12], *silvio[10:12]]}), ADMIN
    )
    assert three.added == [] and three.refused["emp-0003"].startswith(
        "several_people: the photos fall into 2 people"
    )
    assert {p.id for p in office.people.all()} == {"emp-0001", "emp-0002"}
    office.store.close()


def test_no_template_without_consent_under_gdpr_and_consent_is_recorded_first(
    database: str, tmp_path: Path
) -> None:
    office = make_office(tmp_path, database)
    photos = photo_folders(tmp_path / "a", {"emp-0001": [astronaut_photo(tmp_path / "p")]})
    refused = office.enrolment.from_photos(photos, HR)
    assert refused.added == [] and refused.refused == {"emp-0001": "no_consent"}
    assert office.gallery.version is None
    consent = office.consents.record("emp-0001", "Ana Silva", "paper", None, HR)
    assert (consent.text_version, consent.collected_by) == ("v1", "bob") and len(consent.text_sha256) == 64
    taken = office.enrolment.from_photos(photos, HR, Details(group="ops"))
    assert taken.added == ["emp-0001"]
    person = office.people.get("emp-0001")
    assert person is not None and person.consent_id == consent.id and person.group == "ops"
    # A walk-up or an event needs one too: recorded with the request, before anything is made.
    _unknown_event(office, "ev-1", face_template("mirror"))
    with pytest.raises(EnrolError, match="no consent on record for emp-0007"):
        office.enrolment.from_event("ev-1", "emp-0007", HR, Details())
    with pytest.raises(DuplicateError) as dup:
        office.enrolment.from_event("ev-1", "emp-0007", HR, Details("Someone", consent=CONSENT))
    assert dup.value.clashes[0].other == "emp-0001"  # consented, then refused as a duplicate: no template
    assert office.consents.active("emp-0007") is not None and office.people.get("emp-0007") is None
    actions = _actions(office)
    assert ("consent.record", "emp-0007") in actions and ("subject.enrol.refused", "emp-0007") in actions
    office.store.close()


def test_a_consent_recorded_from_the_command_line_is_audited_as_on_the_page(tmp_path: Path) -> None:
    """`faceonly backend consent record`, the page and an enrolment's own consent take one path: the consent
    to the configured text's version, and its audit entry naming who collected it."""
    db = str(tmp_path / "backend.sqlite")
    cfg = office_config(tmp_path, db)
    conf = tmp_path / "backend.toml"
    conf.write_text(
        f'[store]\ndb = "{db}"\n[identity]\ngallery_key_file = "{cfg.identity.gallery_key_file}"\n'
        f'[site]\nconsent_text_file = "{cfg.site.consent_text_file}"\nconsent_version = "v1"\n'
    )
    recorded = _faceonly(
        "backend", "consent", "record", "--config", str(conf), "--id", "emp-0042", "--name", "Ana  Silva",
        "--method", "paper", "--given-at", "2026-12-01T09:30",
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    assert "recorded for emp-0042 (text version v1)" in recorded.stdout
    refused = _faceonly(
        "backend", "consent", "record", "--config", str(conf), "--id", "emp-0043", "--name", "Bo",
        "--method", "paper", "--given-at", "2099-01-01T00:00",
    )  # fmt: skip
    assert refused.returncode == 1 and "refused: the consent cannot be dated in the future" in refused.stderr
    office = make_office(tmp_path, db)
    consent = office.consents.active("emp-0042")
    assert (
        consent is not None
        and consent.person_name == "Ana Silva"
        and office.consents.active("emp-0043") is None
    )
    entry = next(e for e in office.audit.entries(10) if e.action == "consent.record")
    assert entry.target == "emp-0042" and entry.actor.startswith("cli:")
    assert entry.details["consent_id"] == consent.id and entry.details["text_version"] == "v1"
    assert [e.action for e in office.audit.entries(10)] == ["consent.record"] and office.audit.verify().ok
    office.store.close()


def test_config_profiles(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bipa profile allows at most 1095"):
        office_config(
            tmp_path, "x.sqlite", site={"profile": "bipa"}, retention={"templates_after_last_seen_days": 1200}
        )
    assert office_config(tmp_path, "x.sqlite", site={"profile": "bipa"}).template_days == 1095
    assert office_config(tmp_path, "x.sqlite").template_days == 365
    assert office_config(tmp_path, "x.sqlite", site={"profile": "none"}).template_days is None
    with pytest.raises(ConfigError, match="not an IANA time zone"):
        office_config(tmp_path, "x.sqlite", site={"time_zone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="shared page token is replaced"):
        office_config(tmp_path, "x.sqlite", http={"token_file": "t"})
    with pytest.raises(ConfigError, match="loopback only"):
        office_config(tmp_path, "x.sqlite", http={"listen": "0.0.0.0:8080", "auth": "open"})


def test_unknown_event_enrolled_with_consent_and_a_wrong_match_corrected(
    database: str, tmp_path: Path
) -> None:
    office = make_office(tmp_path, database)
    _unknown_event(office, "ev-1", face_template())
    outcome = office.enrolment.from_event("ev-1", "emp-0001", HR, Details("Ana Silva", consent=CONSENT))
    assert outcome.added == ["emp-0001"] and office.gallery.holds("emp-0001")
    assert office.people.get("emp-0001").source == "event"
    # The event is gone from the live view: nothing to make a template from.
    _unknown_event(office, "ev-2", None)
    with pytest.raises(EnrolError, match="no longer held"):
        office.enrolment.from_event("ev-2", "emp-0002", HR, Details(consent=CONSENT))
    # A pass recorded as emp-0001 that was someone else: corrected to unknown, audited, the original kept.
    now = time.time()
    office.store.record(
        [
            Record(
                f"m{i}", "gate-01", now + i, now + i, "accepted", "emp-0001", 0.95, "terminal", (), {}, 0.94
            )
            for i in range(3)
        ]
    )
    office.live.add(
        "m0",
        LiveEntry(None, b"{}", None, face_template("mirror"), office.gallery.embedder.sha256, "emp-0001"),
    )
    done = office.corrections.correct("m0", None, "it was a visitor", HR)
    assert done["confusions"] == []
    record = office.store.event("m0")
    assert record.subject is None and record.original_subject == "emp-0001"
    # That image never becomes a template, whoever asks.
    with pytest.raises(EnrolError, match="never becomes a template"):
        office.enrolment.from_event("m0", "emp-0009", ADMIN, Details(consent=CONSENT))
    # The same confusion again: reported (two strangers taken for emp-0001).
    repeated = office.corrections.correct("m1", None, "a visitor again", HR)["confusions"]
    assert repeated and repeated[0]["subjects"] == ["emp-0001", None] and repeated[0]["count"] == 2
    office.people.put("emp-0002", "Bo", "photos")
    office.corrections.correct("m2", "emp-0002", "it was Bo", HR)
    office.store.record(
        [Record("m3", "gate-01", now, now, "accepted", "emp-0002", 0.95, "terminal", (), {}, 0.94)]
    )
    pair = office.corrections.correct("m3", "emp-0001", "it was Ana", HR)["confusions"]
    assert pair[0]["subjects"] == ["emp-0001", "emp-0002"] and "confused 2 times" in pair[0]["text"]
    with pytest.raises(ValueError, match="needs a reason"):
        office.corrections.correct("m3", None, "  ", HR)
    assert [a for a, _ in _actions(office)].count("event.correct") == 4 and office.audit.verify().ok
    office.store.close()


def test_deactivate_keeps_records_erase_anonymises_them_never_silently_lost(
    database: str, tmp_path: Path
) -> None:
    office = make_office(tmp_path, database, site={"profile": "none"})
    office.store.add_terminal("gate-01", "A" * 43 + "=")
    office.store.add_terminal("gate-02", "B" * 43 + "=")
    for n, which in ((1, "astronaut"), (2, "mirror")):
        _unknown_event(office, f"ev-{n}", face_template(which))
    office.enrolment.from_event("ev-1", "emp-0001", ADMIN, Details("Ana"))
    office.enrolment.from_event(
        "ev-2", "emp-0002", ADMIN, Details("Ana's twin", override=Override(("emp-0001",), "twins"))
    )
    now = time.time()
    office.store.record(
        [
            Record(
                f"p{i}",
                "gate-01",
                now + i,
                now + i,
                "accepted",
                f"emp-000{1 + i % 2}",
                0.97,
                "terminal",
                (),
                {},
            )
            for i in range(6)
        ]
    )
    receipt = office.removal.deactivate("emp-0001", HR, "left the company")
    assert receipt["subject"] == "emp-0001" and receipt["attendance"] == {"records": 4, "policy": "kept"}
    assert [t["terminal"] for t in receipt["terminals"]] == ["gate-01", "gate-02"]
    assert all(t["confirmed_at"] is None for t in receipt["terminals"]) and not receipt["complete"]
    assert not office.gallery.holds("emp-0001") and office.gallery.holds("emp-0002")
    assert (
        office.people.get("emp-0001").status == "deactivated"
        and office.people.get("emp-0001").display_name == "Ana"
    )
    assert len(office.store.events(100, subject="emp-0001")) == 3 + 1
    assert office.live.get("ev-1") is None  # her enrolment pass: its embedding went with her
    assert office.store.event("ev-1").subject == "emp-0001"  # the pass itself is hers, kept
    erased = office.removal.erase("emp-0002", HR)
    assert erased["attendance"] == {"records": 4, "policy": "anonymised"}
    assert (
        office.people.get("emp-0002").display_name is None
        and office.people.get("emp-0002").status == "erased"
    )
    left = office.store.events(100)
    assert len(left) == 6 + 2 and not any(r.subject == "emp-0002" for r in left)
    aliases = {r.subject for r in left if r.subject and r.subject.startswith("anon-")}
    assert len(aliases) == 1  # her four passes, still countable as one person's, linked to no one
    # Each purge is pending at both terminals until they confirm (faceonly_backend/pusher.py does).
    pending = office.purges.pending("gate-02")
    assert [s for _, s in pending] == ["emp-0001", "emp-0002"]
    office.purges.confirm(pending[0][0], "gate-02", {"templates_erased": 1, "events_erased": 0})
    office.purges.confirm(pending[0][0], "gate-01", {"templates_erased": 1, "events_erased": 2})
    done = office.purges.receipt(pending[0][0])
    assert done["complete"] and [t["events_erased"] for t in done["terminals"]] == [2, 0]
    assert office.audit.verify().ok
    office.store.close()


def test_retention_purges_past_the_end_date_and_after_the_days_unseen(database: str, tmp_path: Path) -> None:
    office = make_office(
        tmp_path,
        database,
        site={"profile": "none", "time_zone": "Europe/Berlin"},
        retention={"templates_after_last_seen_days": 30},
    )
    long_ago = time.time() - 90 * 86400
    for n, which in ((1, "astronaut"), (2, "mirror"), (3, "astronaut")):
        _unknown_event(office, f"ev-{n}", face_template(which), when=long_ago)
    office.enrolment.from_event("ev-1", "emp-0001", ADMIN, Details(end_date="2026-01-31"))
    office.enrolment.from_event("ev-2", "emp-0002", ADMIN, Details(override=Override(("emp-0001",), "twins")))
    office.enrolment.from_event(
        "ev-3", "emp-0003", ADMIN, Details(override=Override(("emp-0001", "emp-0002"), "triplets"))
    )
    now = time.time()
    office.store.write("UPDATE subjects SET added_at = ?", (now - 90 * 86400,))
    office.store.record(
        [Record("seen", "gate-01", now - 86400, now, "accepted", "emp-0003", 0.97, "terminal", (), {})]
    )
    purged = office.removal.sweep(now)
    receipts = [office.purges.receipt(p) for p in purged]
    assert sorted((r["subject"], r["reason"].split(":")[0]) for r in receipts) == [
        ("emp-0001", "retention"),
        ("emp-0002", "retention"),
    ]
    reasons = {r["subject"]: r["reason"] for r in receipts}
    assert (
        "end date 2026-01-31 passed" in reasons["emp-0001"] and "not seen for 30 days" in reasons["emp-0002"]
    )
    assert [p.id for p in office.people.all() if p.status == "active"] == ["emp-0003"]
    assert office.removal.sweep(now) == []  # done once
    assert ("subject.purge", "emp-0001") in _actions(office)
    office.store.close()
