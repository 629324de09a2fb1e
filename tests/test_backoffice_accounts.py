"""Staff accounts through the page's API (Starlette's test client): argon2 password hashes, sessions in an
HttpOnly SameSite=Strict cookie, CSRF on every state-changing request, roles (a viewer cannot enrol, correct,
export or see biometric detail; HR can; only an admin overrides a duplicate or manages staff), API tokens per
integration, role changes and exports in the audit log. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from faceonly_backend.audit import Actor
from faceonly_backend.live import LiveEntry
from faceonly_backend.service import BackendService
from faceonly_backend.store import Record
from faceonly_backend.web import build_app
from tests.office_parts import office_config

PASSWORD = "correct horse battery"


@pytest.fixture
def service(database: str, tmp_path: Path):
    cfg = office_config(tmp_path, database, mqtt={"broker": "mqtt://127.0.0.1:1"})
    svc = BackendService(cfg)
    accounts = svc.office.accounts
    for name, role in (("ada", "admin"), ("hana", "hr"), ("vic", "viewer")):
        accounts.add_staff(name, PASSWORD, role, "test")
    now = time.time()
    svc.store.record(
        [
            Record(
                "e1",
                "gate-01",
                now,
                now,
                "accepted",
                "emp-1",
                0.97,
                "terminal",
                (),
                {},
                0.94,
                0.1,
                "emp-1",
                0.97,
            ),
            Record(
                "e2",
                "gate-01",
                now + 1,
                now + 1,
                "accepted",
                None,
                0.88,
                "backend",
                (),
                {},
                0.94,
                0.02,
                "emp-1",
                0.88,
            ),
        ]
    )
    svc.office.people.put("emp-1", "Ana Silva", "photos", "ops")
    svc.live.add("e2", LiveEntry(b"\x89PNG\r\n\x1a\n...", b'{"id": "e2"}', None, None, None, None))
    yield svc
    svc.store.close()


def _login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    reply = client.post("/api/login", json={"username": name, "password": password})
    assert reply.status_code == 200, reply.text
    return reply.json()["csrf"]


def test_login_sets_a_strict_http_only_cookie_and_csrf_guards_every_change(service) -> None:
    client = TestClient(build_app(service))
    assert client.get("/api/events").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "login"
    assert (
        client.post("/api/login", json={"username": "ada", "password": "wrong password"}).status_code == 401
    )
    assert client.post("/api/login", json={"username": "nobody", "password": PASSWORD}).json() == {
        "error": "wrong user name or password"
    }
    reply = client.post("/api/login", json={"username": "ada", "password": PASSWORD})
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "faceonly_session=" in cookie
    csrf = reply.json()["csrf"]
    assert client.get("/api/me").json()["role"] == "admin"
    # A change without the session's CSRF token (what another site could make a browser send): refused.
    assert client.post("/api/events/e1/correct", json={"subject": None, "reason": "x"}).status_code == 403
    wrong = client.post(
        "/api/events/e1/correct", json={"subject": None, "reason": "x"}, headers={"X-CSRF-Token": "no"}
    )
    assert wrong.status_code == 403
    ok = client.post(
        "/api/events/e1/correct",
        json={"subject": None, "reason": "a visitor"},
        headers={"X-CSRF-Token": csrf},
    )
    assert ok.status_code == 200, ok.text
    # The store holds the session's hash, never the id in the cookie; the password as argon2id.
    session_id = client.cookies.get("faceonly_session")
    assert not service.store.query("SELECT 1 FROM sessions WHERE id_sha256 = ?", (session_id,))
    assert service.store.query("SELECT password_hash FROM staff WHERE username = 'ada'")[0][0].startswith(
        "$argon2id$"
    )
    assert client.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_what_each_role_may_do(service) -> None:
    apps = {name: TestClient(build_app(service)) for name in ("ada", "hana", "vic")}
    csrf = {name: _login(c, name) for name, c in apps.items()}
    viewer, hr, admin = apps["vic"], apps["hana"], apps["ada"]

    def post(client: TestClient, who: str, path: str, body: dict):
        return client.post(path, json=body, headers={"X-CSRF-Token": csrf[who]})

    # Everyone sees decisions and the day report; only HR and admins see how near a stranger came, and whom.
    seen = {e["event_id"]: e for e in viewer.get("/api/events").json()}
    assert seen["e2"]["score"] == 0.88 and seen["e2"]["threshold"] == 0.94 and "nearest" not in seen["e2"]
    near = {e["event_id"]: e for e in hr.get("/api/events").json()}["e2"]
    assert (near["nearest"], near["nearest_name"], near["margin"]) == ("emp-1", "Ana Silva", 0.02)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    assert viewer.get(f"/api/attendance/days?from={day}&to={day}").status_code == 200
    # A viewer exports no data, sees no thumbnail or raw bytes, enrols and corrects nothing.
    for path in (
        f"/api/attendance/days.csv?from={day}&to={day}",
        f"/api/attendance/days.xlsx?from={day}&to={day}",
        "/api/attendance.csv",
        "/api/events/e2/thumbnail",
        "/api/events/e2/raw",
    ):
        assert viewer.get(path).status_code == 403, path
        assert hr.get(path).status_code == 200, path
    for path, body in (
        ("/api/events/e2/enrol", {"subject": "emp-2", "consent": {"person_name": "X", "method": "paper"}}),
        ("/api/subjects/emp-2/enroll", {"terminal": "gate-01"}),
        ("/api/events/e1/correct", {"subject": None, "reason": "not her"}),
        ("/api/subjects/emp-1/consent", {"person_name": "Ana Silva", "method": "paper"}),
        ("/api/attendance/punches", {"subject": "emp-1", "time": f"{day}T08:00", "reason": "forgot"}),
        ("/api/subjects/emp-1/deactivate", {}),
    ):
        assert post(viewer, "vic", path, body).status_code == 403, path
    assert (
        post(
            hr, "hana", "/api/subjects/emp-1/consent", {"person_name": "Ana Silva", "method": "paper"}
        ).status_code
        == 200
    )
    assert (
        post(
            hr,
            "hana",
            "/api/attendance/punches",
            {"subject": "emp-1", "time": f"{yesterday}T07:00", "reason": "badge"},
        ).status_code
        == 200
    )
    # Staff, tokens and the audit log: admins only.
    for path in ("/api/staff", "/api/tokens", "/api/audit", "/api/audit/verify"):
        assert hr.get(path).status_code == 403 and admin.get(path).status_code == 200, path
    assert (
        post(hr, "hana", "/api/staff", {"username": "eve", "password": PASSWORD, "role": "admin"}).status_code
        == 403
    )
    # A role change is audited, and the changed person logs in again to get the new role.
    changed = admin.patch("/api/staff/vic", json={"role": "hr"}, headers={"X-CSRF-Token": csrf["ada"]})
    assert changed.json()["role"] == "hr" and viewer.get("/api/me").status_code == 401
    assert (
        admin.patch("/api/staff/ada", json={"role": "hr"}, headers={"X-CSRF-Token": csrf["ada"]}).status_code
        == 409
    )
    entries = admin.get("/api/audit").json()
    actions = [(e["action"], e["target"], e["actor"]) for e in entries]
    assert ("staff.role", "vic", "ada") in actions and ("consent.record", "emp-1", "hana") in actions
    assert ("export.attendance", f"{day}..{day}", "hana") in actions and (
        "export.events",
        "all",
        "hana",
    ) in actions
    assert ("attendance.punch", "emp-1", "hana") in actions
    assert admin.get("/api/audit/verify").json()["ok"]


def test_api_tokens_one_per_integration(service) -> None:
    token = service.office.accounts.add_token("payroll", "hr", Actor("ada", "admin"))
    client = TestClient(build_app(service))
    bearer = {"Authorization": f"Bearer {token}"}
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert client.get(f"/api/attendance/days.csv?from={day}&to={day}", headers=bearer).status_code == 200
    # A token is not a browser's ambient credential: no CSRF token needed, none given.
    assert (
        client.post(
            "/api/events/e1/correct", json={"subject": None, "reason": "x"}, headers=bearer
        ).status_code
        == 200
    )
    assert client.get("/api/staff", headers=bearer).status_code == 403  # its role is hr
    assert client.get("/api/events", headers={"Authorization": f"Bearer {token[:-1]}x"}).status_code == 401
    assert (
        service.store.query(
            "SELECT COUNT(*) FROM api_tokens WHERE secret_sha256 LIKE ?", (token[-20:] + "%",)
        )[0][0]
        == 0
    )
    service.office.accounts.revoke_token("payroll")
    assert client.get("/api/events", headers=bearer).status_code == 401
    exported = [e for e in service.office.audit.entries(20) if e.action == "export.attendance"]
    assert exported and exported[0].actor == "token:payroll"


def test_failed_logins_slow_down_one_name(service) -> None:
    accounts = service.office.accounts
    for _ in range(5):
        with pytest.raises(ValueError, match="wrong user name or password"):
            accounts.login("hana", "not it")
    with pytest.raises(ValueError, match="too many failed logins"):
        accounts.login("hana", PASSWORD)
    assert accounts.login("ada", PASSWORD)[1].actor.role == "admin"  # other names are not held up
