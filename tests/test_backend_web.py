"""The backend's page API (Starlette, through its test client) in a lab (`auth = "open"`; logins and roles:
test_backoffice_accounts.py), and its command line: config validation, terminal registration. No broker is
needed: nothing here connects."""

from __future__ import annotations

import calendar
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from device.config import ConfigError
from faceonly_backend.config import load_backend_config
from faceonly_backend.live import LiveEntry
from faceonly_backend.service import BackendService
from faceonly_backend.store import Record, Store
from faceonly_backend.web import build_app

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-03-04"
T0 = float(calendar.timegm((2026, 3, 4, 8, 0, 0)))


def _faceonly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def service(tmp_path: Path):
    cfg = load_backend_config(
        None,
        {
            "state_dir": str(tmp_path),
            "mqtt": {"broker": "mqtt://127.0.0.1:1"},
            "http": {"auth": "open"},
            "site": {"profile": "none"},
        },
    )
    svc = BackendService(cfg)
    reasons = ({"code": "liveness.passed", "text": "the challenge passed"},)
    for i, (when, subject) in enumerate(((T0, "emp-1"), (T0 + 60, None), (T0 - 86400, "emp-2"))):
        svc.store.record(
            [Record(f"e{i}", "t1", when, when + 1, "accepted", subject, 0.95, "terminal", reasons, {})]
        )
    svc.live.add("e0", LiveEntry(b"\xff\xd8jpeg", b'{"id": "e0"}', None))
    yield svc
    svc.store.close()


def test_events_newest_first_with_date_filter_raw_thumbnail_and_csv(service) -> None:
    client = TestClient(build_app(service))
    events = client.get("/api/events").json()
    assert [e["event_id"] for e in events] == ["e1", "e0", "e2"]
    assert all({"event_id", "terminal", "decision", "subject"} <= set(e) for e in events)
    assert [e["event_id"] for e in client.get(f"/api/events?date={DAY}").json()] == ["e1", "e0"]
    assert client.get("/api/events?date=yesterday").status_code == 400
    assert client.get("/api/events/e0/raw").content == b'{"id": "e0"}'
    assert client.get("/api/events/e0/thumbnail").headers["content-type"] == "image/jpeg"
    gone = client.get("/api/events/e2/thumbnail")
    assert gone.status_code == 404 and "live view" in gone.json()["error"]
    csv = client.get(f"/api/attendance.csv?date={DAY}").text.splitlines()
    assert csv[0].startswith("time_utc,terminal,subject,decision,score,reasons,event_id")
    assert len(csv) == 3 and csv[2].startswith(
        "2026-03-04T08:00:00Z,t1,emp-1,accepted,0.95,liveness.passed,e0"
    )
    assert "<title>faceonly backend</title>" in client.get("/").text


def test_a_thumbnail_is_served_as_what_it_is(service) -> None:
    # PNG from this release's terminals, JPEG from older ones in the same fleet, anything else not as an image.
    service.live.add("png", LiveEntry(b"\x89PNG\r\n\x1a\n...", b"{}", None))
    service.live.add("junk", LiveEntry(b"<svg onload=alert(1)>", b"{}", None))
    client = TestClient(build_app(service))
    served = {e: client.get(f"/api/events/{e}/thumbnail").headers for e in ("png", "e0", "junk")}
    assert [h["content-type"] for h in served.values()] == [
        "image/png",
        "image/jpeg",
        "application/octet-stream",
    ]
    assert all(h["x-content-type-options"] == "nosniff" for h in served.values())


def test_erasing_a_person_keeps_their_records_anonymised_and_drops_their_live_thumbnails(service) -> None:
    client = TestClient(build_app(service))
    service.office.people.put("emp-1", "Ana", "photos")
    reply = client.delete("/api/subjects/emp-1")  # not in any gallery: nothing for a terminal to erase
    assert reply.status_code == 200, reply.text
    receipt = reply.json()
    assert receipt["subject"] == "emp-1" and receipt["attendance"] == {"records": 1, "policy": "anonymised"}
    assert receipt["requested_by"] == "lab" and receipt["complete"]  # no terminal registered
    records = {e.event_id: e for e in service.store.events()}
    assert len(records) == 3 and records["e0"].subject.startswith("anon-")  # never silently lost
    assert service.live.get("e0") is None
    assert client.delete("/api/subjects/emp-1").status_code == 409  # erased already
    bad = client.post(
        "/api/subjects/emp-9/enroll", content=b"not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and len(service.store.events()) == 3
    # A cross-site form or text/plain post (no preflight) is refused before anything happens.
    simple = client.post(
        "/api/subjects/emp-9/enroll", content=b'{"terminal": "t1"}', headers={"Content-Type": "text/plain"}
    )
    assert simple.status_code == 415


def test_loopback_page_serves_only_its_own_host_names(service) -> None:
    client = TestClient(build_app(service, ["127.0.0.1", "localhost"]), base_url="http://127.0.0.1:8080")
    assert client.get("/api/events").status_code == 200
    assert client.get("/api/events", headers={"Host": "rebound.example:8080"}).status_code == 400


def test_config_refuses_unknown_keys_a_lab_beyond_loopback_and_the_old_shared_token(tmp_path: Path) -> None:
    conf = tmp_path / "backend.toml"
    conf.write_text(
        '[http]\nlisten = "0.0.0.0:8080"\nauth = "open"\n[store]\ndb = "x.sqlite"\nsurprise = 1\n'
    )
    with pytest.raises(ConfigError) as err:
        load_backend_config(conf)
    assert any("store.surprise: unknown key" in p for p in err.value.problems)
    assert any("is for loopback only" in p for p in err.value.problems)
    old = tmp_path / "old.toml"
    old.write_text('[http]\ntoken_file = "/etc/faceonly/backend-http.token"\n')
    with pytest.raises(ConfigError) as err:
        load_backend_config(old)
    assert any("faceonly backend users add / tokens add" in p for p in err.value.problems)
    result = _faceonly("backend", "--config", str(conf), "--validate-config")
    assert result.returncode == 2 and "store.surprise: unknown key" in result.stderr
    ok = _faceonly("backend", "--validate-config", "--broker", "mqtt://b:1883", "--http", "127.0.0.1:9000")
    assert ok.returncode == 0 and "config OK" in ok.stderr
    example = _faceonly("backend", "--config", str(ROOT / "backend.example.toml"), "--validate-config")
    assert example.returncode == 0, example.stderr
    bad_broker = _faceonly("backend", "--validate-config", "--broker", "b:1883")
    assert bad_broker.returncode == 2 and "mqtt://" in bad_broker.stderr


def test_terminals_add_pins_a_key_once(tmp_path: Path) -> None:
    db = str(tmp_path / "a.sqlite")
    key = "A" * 43 + "="
    assert (
        _faceonly("backend", "terminals", "add", "--db", db, "--id", "t1", "--public-key", key).returncode
        == 0
    )
    again = _faceonly("backend", "terminals", "add", "--db", db, "--id", "t1", "--public-key", key)
    assert again.returncode == 0
    other = _faceonly("backend", "terminals", "add", "--db", db, "--id", "t1", "--public-key", "B" * 43 + "=")
    assert other.returncode == 2 and "another key" in other.stderr
    bad = _faceonly("backend", "terminals", "add", "--db", db, "--id", "t2", "--public-key", "short")
    assert bad.returncode == 2
    store = Store(db)
    assert store.terminal_keys() == {"t1": key}
    store.close()


def test_the_docs_walk_up_curl_is_accepted_as_written(service) -> None:
    """docs/backend.md's enrol command, parsed as curl would send it: JSON with its content type (without it the
    page refuses with 415, which is what a newcomer met)."""
    import shlex

    text = (ROOT / "docs" / "backend.md").read_text()
    block = next(b for b in text.split("```") if "/enroll" in b and "curl" in b)
    line = block[block.index("curl -X POST") :].split("\ncurl")[0].replace("\\\n", " ")
    args = shlex.split(line)
    url, method = args[args.index("-X") + 2], args[args.index("-X") + 1]
    headers = dict(h.split(": ", 1) for h in (args[i + 1] for i, a in enumerate(args) if a == "-H"))
    body = args[args.index("-d") + 1]
    client = TestClient(build_app(service), base_url="http://127.0.0.1:8080")
    res = client.request(method, url, headers=headers, content=body)
    # It reaches the enrolment, which fails here only because no broker and terminal are running.
    assert res.status_code not in (400, 415) and "must be" not in res.text, res.text
