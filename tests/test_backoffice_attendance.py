"""A day of passes across two doors, through the real path (signed face events from two terminals over a real
mosquitto, the backend process, its store), and the per-day report compared with what happened: first in and
last out in the site's time zone, time worked, doors, the person lingering at a door counted once, a missing
punch flagged, strangers and rejected faces not counted; then a manual punch closes the missing one, and the
CSV and XLSX exports say the same. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import urllib.request
import zoneinfo
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from device.privacy.signing import Signer
from faceonly_backend.people import People
from faceonly_backend.store import Store
from tests.backend_parts import BackendProc, face_event, public_key, register
from tests.broker import Broker

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# Who passed where, when (local time), as what: (subject or None for a stranger, door, HH:MM[:SS], decision).
DAY = [
    ("emp-0001", "door-a", "08:01:00", "accepted"),
    ("emp-0001", "door-a", "08:01:25", "accepted"),  # still in front of the camera: the same pass
    ("emp-0003", "door-a", "07:30:00", "accepted"),  # in, and never out: a missing punch
    ("emp-0002", "door-b", "09:00:00", "accepted"),
    (None, "door-a", "10:00:00", "accepted"),  # a stranger
    ("emp-0002", "door-b", "11:00:00", "rejected"),  # not let through: no pass
    ("emp-0001", "door-b", "12:02:00", "accepted"),  # lunch, by the side door
    ("emp-0001", "door-b", "12:47:00", "accepted"),
    ("emp-0001", "door-a", "17:05:00", "accepted"),
    ("emp-0002", "door-b", "18:30:00", "accepted"),
]
WHAT_HAPPENED = {  # subject: (first in, last out, worked, doors, missing)
    "emp-0001": ("08:01", "17:05", "8:19", ["door-a", "door-b"], []),
    "emp-0002": ("09:00", "18:30", "9:30", ["door-b"], []),
    "emp-0003": ("07:30", None, "0:00", ["door-a"], ["in at 07:30 has no out"]),
}


def _event(signer: Signer, door: str, subject: str | None, at: float, decision: str) -> dict:
    payload = face_event(door, None, ttl_s=14 * 86400, now=at)
    payload["observation"]["decision"] = decision
    payload["match"] = {
        "subject": subject,
        "score": 0.97 if subject else 0.83,
        "margin": 0.05,
        "threshold": 0.94,
        "gallery_version": 1,
    }
    return signer.sign(payload)


def _fetch(backend: BackendProc, path: str) -> bytes:
    request = urllib.request.Request(backend.url + path, headers={"Authorization": f"Bearer {backend.token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.read()


def test_a_day_of_passes_across_two_doors_is_reported_as_it_happened(database: str, tmp_path: Path) -> None:
    day = (dt.datetime.now(BERLIN) - dt.timedelta(days=2)).date()
    conf = tmp_path / "backend.toml"
    conf.write_text(
        f'[store]\ndb = "{database}"\n[site]\nprofile = "none"\ntime_zone = "Europe/Berlin"\n'
        "[attendance]\ndebounce_s = 60\n"
    )
    signers = {door: Signer(SigningKey.generate()) for door in ("door-a", "door-b")}
    for door, signer in signers.items():
        register(database, door, public_key(signer))
    store = Store(database)
    people = People(store)
    for subject, name, group in (
        ("emp-0001", "Ana Silva", "ops"),
        ("emp-0002", "Bo Berg", "ops"),
        ("emp-0003", "Cy Dahl", "lab"),
    ):
        people.put(subject, name, "photos", group)
    store.close()
    with Broker(tmp_path / "mq") as broker:
        backend = BackendProc(tmp_path, broker.url, database, "a", "--config", str(conf))
        try:
            assert backend.wait_for(lambda: "subscribed:" in backend.text(), 20)
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="doors", protocol=mqtt.MQTTv5)
            client.connect(broker.host, broker.port)
            client.loop_start()
            for subject, door, clock, decision in DAY:
                local = dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=BERLIN)
                event = _event(signers[door], door, subject, local.timestamp(), decision)
                client.publish(
                    f"faceonly/v1/dev/{door}/event/face", json.dumps(event), qos=1
                ).wait_for_publish(10)
            client.loop_stop()
            client.disconnect()
            assert backend.wait_for(lambda: backend.json("/api/health")["recorded"] >= len(DAY), 30), (
                backend.text()
            )
            query = f"from={day}&to={day}"
            report = {d["subject"]: d for d in backend.json(f"/api/attendance/days?{query}")["days"]}
            assert set(report) == set(WHAT_HAPPENED)
            for subject, (first, last, worked, doors, missing) in WHAT_HAPPENED.items():
                got = report[subject]
                assert (got["first_in"], got["last_out"], got["worked"], got["doors"], got["missing"]) == (
                    first,
                    last,
                    worked,
                    doors,
                    missing,
                ), subject
                assert got["date"] == str(day) and got["missing_punch"] == bool(missing)
            assert report["emp-0001"]["name"] == "Ana Silva" and report["emp-0003"]["group"] == "lab"
            assert [p["counted"] for p in report["emp-0001"]["punches"]] == [
                "in",
                "repeat",
                "out",
                "in",
                "out",
            ]
            ops = backend.json(f"/api/attendance/days?{query}&group=ops")["days"]
            assert sorted(d["subject"] for d in ops) == ["emp-0001", "emp-0002"]
            # The missing out, added by hand with a reason (HR): the day adds up, and says it was by hand.
            status, made = backend.request(
                "api/attendance/punches",
                {
                    "subject": "emp-0003",
                    "time": f"{day}T16:00",
                    "direction": "out",
                    "reason": "badge at reception",
                },
            )
            assert status == 200, made
            fixed = {d["subject"]: d for d in backend.json(f"/api/attendance/days?{query}")["days"]}[
                "emp-0003"
            ]
            assert (fixed["last_out"], fixed["worked"], fixed["missing"], fixed["manual"]) == (
                "16:00",
                "8:30",
                [],
                1,
            )
            # The exports: CSV and XLSX, one row per person per day, as the report.
            rows = list(
                csv.DictReader(io.StringIO(_fetch(backend, f"api/attendance/days.csv?{query}").decode()))
            )
            assert [
                (r["subject"], r["first_in"], r["last_out"], r["worked"], r["missing_punch"]) for r in rows
            ] == [
                ("emp-0001", "08:01", "17:05", "8:19", "no"),
                ("emp-0002", "09:00", "18:30", "9:30", "no"),
                ("emp-0003", "07:30", "16:00", "8:30", "no"),
            ]
            assert (
                rows[0]["name"] == "Ana Silva"
                and rows[0]["worked_hours"] == "8.32"
                and rows[0]["time_zone"] == "Europe/Berlin"
            )
            from openpyxl import load_workbook

            sheet = load_workbook(io.BytesIO(_fetch(backend, f"api/attendance/days.xlsx?{query}"))).active
            values = list(sheet.iter_rows(values_only=True))
            assert values[0][:6] == ("date", "subject", "name", "group", "first_in", "last_out")
            assert [(v[0].date(), v[1], v[4], v[5], v[7]) for v in values[1:]] == [
                (day, "emp-0001", "08:01", "17:05", 8.32),
                (day, "emp-0002", "09:00", "18:30", 9.5),
                (day, "emp-0003", "07:30", "16:00", 8.5),
            ]
            audit = backend.json("/api/audit?limit=10")
            assert [e["action"] for e in audit][:3] == [
                "export.attendance",
                "export.attendance",
                "attendance.punch",
            ]
        finally:
            assert backend.stop() == 0
