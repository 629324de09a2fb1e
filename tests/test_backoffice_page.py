"""The back office page in headless Chromium (Debian's, through chromium-driver), as each role, against the
real backend process, a real mosquitto and signed face events from two doors (real templates of a real face):

- HR logs in; a stranger shows as "unknown" in neutral grey, never green; HR enrols the unknown person from
  their event with consent; the same face under a second id is refused naming the first (the override is an
  admin's, not offered to HR); "not this person" corrects a match; the per-day report flags a missing punch;
  the CSV and XLSX exports download and parse; HR logs out.
- A viewer sees decisions and the report, but no enrol or correction buttons, no thumbnails, no exports, and
  the API refuses those requests from the viewer's own session.
- An admin overrides a duplicate with a reason, and verifies the audit log from the page.
Screenshots are artefacts (var/artefacts/backoffice, or $FACEONLY_ARTEFACTS/backoffice).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from device.identity.operator import keygen
from device.infra.modelstore import ModelStore
from device.privacy.protector import encode_embedding
from device.privacy.signing import Signer
from device.privacy.thumbnail import encode_png, outside_ellipse
from faceonly_backend.people import People
from faceonly_backend.store import Store
from tests.backend_parts import BackendProc, face_event, public_key, register
from tests.broker import Broker
from tests.conftest import missing_data
from tests.office_parts import face_template

ROOT = Path(__file__).resolve().parent.parent
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
PASSWORD = "correct horse battery"
WAIT_S = 20.0


def artefacts() -> Path:
    out = Path(os.environ.get("FACEONLY_ARTEFACTS", ROOT / "var" / "artefacts")) / "backoffice"
    out.mkdir(parents=True, exist_ok=True)
    return out


def chromium(downloads: Path) -> Any:
    exe, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if exe is None or driver is None:
        missing_data("Chromium or chromium-driver is missing (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = exe
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service(driver))
    downloads.mkdir(parents=True, exist_ok=True)
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return browser


def _thumbnail() -> str:
    """A face-only thumbnail as a terminal sends it: the face, black outside its ellipse, PNG."""
    import base64

    from skimage import data

    face = cv2.resize(data.astronaut()[20:230, 130:330, ::-1], (112, 112))
    face[outside_ellipse(112, 112)] = 0
    return base64.b64encode(encode_png(face)).decode()


def _event(signer: Signer, door: str, at: float, subject: str | None = None, embedding=None) -> dict:
    payload = face_event(door, None, ttl_s=14 * 86400, now=at)
    if subject is not None:
        payload["match"] = {
            "subject": subject,
            "score": 0.962,
            "margin": 0.03,
            "threshold": 0.944,
            "gallery_version": 1,
        }
    else:
        sha = ModelStore().entry("embedder").sha256
        payload["biometric"] = {
            "template_key_id": None,
            "embedder": {"sha256": sha},
            "embedding": encode_embedding(embedding),
            "thumbnail": _thumbnail(),
        }
    return signer.sign(payload)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("backoffice-page")
    keygen(tmp / "gallery.key")
    (tmp / "consent.txt").write_text("I agree that my face template is used to record my attendance.\n")
    db = str(tmp / "backend.sqlite")
    conf = tmp / "backend.toml"
    conf.write_text(
        f'[store]\ndb = "{db}"\n[identity]\ngallery_key_file = "{tmp / "gallery.key"}"\n'
        f'[site]\nname = "Acme Works"\ntime_zone = "Europe/Berlin"\nconsent_text_file = "{tmp / "consent.txt"}"\n'
        'consent_version = "2026-1"\n'
    )
    (tmp / "pw").write_text(PASSWORD + "\n")
    for user, role in (("hana", "hr"), ("vic", "viewer"), ("ada", "admin")):
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "device",
                "backend",
                "users",
                "add",
                "--config",
                str(conf),
                "--username",
                user,
                "--role",
                role,
                "--password-file",
                str(tmp / "pw"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
    signers = {door: Signer(SigningKey.generate()) for door in ("door-a", "door-b")}
    for door, signer in signers.items():
        register(db, door, public_key(signer))
    store = Store(db)
    People(store).put("emp-0007", "Bo Berg", "photos", "ops")
    store.close()
    broker = Broker(tmp / "mq")
    backend = BackendProc(tmp, broker.url, db, "page", "--config", str(conf))
    assert backend.wait_for(lambda: "subscribed:" in backend.text(), 20)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="doors", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    now = time.time()
    # The day before the earliest of today's events, in the site's zone: a run just after Berlin's midnight
    # must not count the stranger of two minutes ago (enrolled below) in the day the report checks.
    yesterday = (dt.datetime.fromtimestamp(now - 120, BERLIN) - dt.timedelta(days=1)).date()
    events = [
        (
            "door-a",
            dt.datetime.combine(yesterday, dt.time(8, 0), tzinfo=BERLIN).timestamp(),
            "emp-0007",
            None,
        ),
        ("door-a", now - 120, None, face_template()),  # a stranger (the astronaut)
        ("door-b", now - 60, None, face_template("mirror")),  # the same person again, at the other door
        ("door-b", now - 30, "emp-0007", None),  # a match to correct
    ]
    ids = []
    for door, at, subject, embedding in events:
        event = _event(signers[door], door, at, subject, embedding)
        ids.append(event["id"])
        client.publish(f"faceonly/v1/dev/{door}/event/face", json.dumps(event), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    assert backend.wait_for(lambda: backend.json("/api/health")["recorded"] >= len(events), 30), (
        backend.text()
    )
    yield {"backend": backend, "tmp": tmp, "ids": ids, "yesterday": yesterday, "conf": conf}
    backend.stop()
    broker.kill()


def _login(browser, url: str, user: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url)
    _until(browser, lambda: browser.current_url.endswith("/login"))
    browser.find_element(By.NAME, "username").send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    _until(browser, lambda: browser.execute_script("return document.body.dataset.ready === '1'"))


def _until(browser, pred, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - the page is still loading: ask again
            pass
        time.sleep(0.2)
    raise AssertionError(f"the page did not get there in {timeout:g} s: {browser.current_url}")


def _card(browser, event_id: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f'.event[data-event="{event_id}"]')


def _press(browser, event_id: str, button: str) -> None:
    """Click a button on an event's card; the live page may redraw the card between finding and clicking it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def pressed() -> bool:
        try:
            _card(browser, event_id).find_element(By.CSS_SELECTOR, button).click()
        except StaleElementReferenceException:
            return False
        return True

    _until(browser, pressed)


def _shot(browser, name: str) -> Path:
    path = artefacts() / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def _fetch(browser, path: str, method: str = "GET", body: dict | None = None) -> int:
    """The status of a request made from the page itself (the logged-in session and its CSRF token)."""
    return browser.execute_async_script(
        """const [path, method, body, done] = arguments;
        const headers = {"Content-Type": "application/json", "X-CSRF-Token": me.csrf};
        fetch(path, {method, headers, body: body ? JSON.stringify(body) : undefined}).then((r) => done(r.status));""",
        path,
        method,
        body,
    )


def _grey(color: str) -> bool:
    r, g, b = (int(float(v)) for v in color[color.index("(") + 1 : color.index(")")].split(",")[:3])
    return max(r, g, b) - min(r, g, b) < 20


def test_hr_enrols_with_consent_is_refused_a_duplicate_corrects_a_match_reads_and_exports_the_day(  # noqa: PLR0915 - one session at the page, step by step
    site,
) -> None:
    from selenium.webdriver.common.by import By

    backend, (_, stranger, again, match) = site["backend"], site["ids"]
    downloads = site["tmp"] / "downloads-hr"
    browser = chromium(downloads)
    try:
        browser.get(backend.url)
        _until(browser, lambda: browser.current_url.endswith("/login"))
        _shot(browser, "01-login")
        _login(browser, backend.url, "hana")
        assert "hana (hr)" in browser.find_element(By.ID, "who").text
        # The stranger: "unknown", in grey, with how near it came and to whom (HR may see that).
        card = _card(browser, stranger)
        badge = card.find_element(By.CSS_SELECTOR, ".verdict")
        assert badge.text == "unknown" and _grey(badge.value_of_css_property("background-color"))
        assert card.get_attribute("data-kind") == "unknown" and "unknown person" in card.text
        match_badge = _card(browser, match).find_element(By.CSS_SELECTOR, ".verdict")
        assert match_badge.text == "recognised" and not _grey(
            match_badge.value_of_css_property("background-color")
        )
        assert (
            "Bo Berg (emp-0007)" in _card(browser, match).text
            and "threshold 0.944" in _card(browser, match).text
        )
        _until(
            browser,
            lambda: (
                _card(browser, stranger).find_element(By.CSS_SELECTOR, "img").get_attribute("data-loaded")
            ),
        )
        _shot(browser, "02-hr-live-events")
        # Enrol the stranger from their event, with consent.
        _press(browser, stranger, "button.enrol-event")
        form = browser.find_element(By.ID, "enrol")
        assert "2026-1" in browser.find_element(By.ID, "consent-version").text
        form.find_element(By.NAME, "subject").send_keys("emp-0001")
        form.find_element(By.NAME, "display_name").send_keys("Ana Silva")
        form.find_element(By.NAME, "group").send_keys("ops")
        form.find_element(By.NAME, "person_name").send_keys("Ana Silva")
        form.find_element(By.NAME, "consent_given").click()
        _shot(browser, "03-hr-enrol-with-consent")
        browser.find_element(By.ID, "enrol-submit").click()
        _until(
            browser, lambda: "enrolled: gallery version 1" in browser.find_element(By.ID, "enrol-result").text
        )
        _until(browser, lambda: not browser.find_element(By.ID, "enrol-dialog").get_attribute("open"))
        # The same face at the other door, under another id: refused, naming her; no override for HR.
        _until(browser, lambda: _card(browser, again).find_element(By.CSS_SELECTOR, "button.enrol-event"))
        _press(browser, again, "button.enrol-event")
        form.find_element(By.NAME, "subject").send_keys("emp-0042")
        form.find_element(By.NAME, "person_name").send_keys("Ana Silva")
        form.find_element(By.NAME, "consent_given").click()
        browser.find_element(By.ID, "enrol-submit").click()
        result = browser.find_element(By.ID, "enrol-result")
        _until(browser, lambda: "refused" in result.text)
        assert "emp-0042 scores" in result.text and "against emp-0001" in result.text
        assert "Ana Silva (emp-0001)" in browser.find_element(By.ID, "override-text").text
        assert not form.find_element(By.NAME, "override").is_displayed()  # an admin's decision
        _shot(browser, "04-hr-duplicate-refused")
        browser.find_element(By.CSS_SELECTOR, '#enrol button[value="cancel"]').click()
        # "Not this person" on the match: corrected to unknown, with a reason.
        _press(browser, match, "button.not-this-person")
        correct = browser.find_element(By.ID, "correct")
        assert "Bo Berg (emp-0007)" in browser.find_element(By.ID, "correct-text").text
        correct.find_element(By.NAME, "reason").send_keys("a delivery driver, not Bo")
        browser.find_element(By.ID, "correct-submit").click()
        _until(browser, lambda: "corrected" in _card(browser, match).text)
        _until(browser, lambda: not browser.find_element(By.ID, "correct-dialog").get_attribute("open"))
        assert _card(browser, match).get_attribute("data-kind") == "unknown"
        # The day before: Bo came in at 08:00 and never went out: a missing punch, flagged.
        day = str(site["yesterday"])
        browser.execute_script(
            "const f = document.getElementById('range'); f.elements.from.value = arguments[0];"
            "f.elements.to.value = arguments[0]; f.requestSubmit();",
            day,
        )
        row = '#report tr[data-subject="emp-0007"]'
        _until(browser, lambda: browser.find_element(By.CSS_SELECTOR, row))
        cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, f"{row} td")]
        assert cells[:6] == [day, "Bo Berg (emp-0007)", "ops", "08:00", "-", "0:00"]
        assert "in at 08:00 has no out" in cells[8] and "missing" in browser.find_element(
            By.CSS_SELECTOR, row
        ).get_attribute("class")
        browser.find_element(By.ID, "days").location_once_scrolled_into_view  # noqa: B018 - scrolls the report into the screenshot
        _shot(browser, "05-hr-day-report-missing-punch")
        # The exports, downloaded by the browser and read back.
        browser.find_element(By.ID, "csv-days").click()
        browser.find_element(By.ID, "xlsx-days").click()
        name = f"attendance-{day}-{day}"
        _until(
            browser, lambda: (downloads / f"{name}.csv").exists() and (downloads / f"{name}.xlsx").exists()
        )
        rows = list(csv.DictReader(io.StringIO((downloads / f"{name}.csv").read_text())))
        assert [(r["subject"], r["name"], r["first_in"], r["missing_punch"]) for r in rows] == [
            ("emp-0007", "Bo Berg", "08:00", "yes")
        ]
        from openpyxl import load_workbook

        sheet = load_workbook(downloads / f"{name}.xlsx").active
        values = list(sheet.iter_rows(values_only=True))
        assert values[1][1:5] == ("emp-0007", "Bo Berg", "ops", "08:00") and values[1][10] == "yes"
        # Log out: back at the login page, and the session is gone.
        browser.find_element(By.ID, "logout").click()
        _until(browser, lambda: browser.current_url.endswith("/login"))
        assert browser.execute_async_script("fetch('api/me').then((r) => arguments[0](r.status))") == 401
    finally:
        browser.quit()
    audit = [(e["action"], e["target"], e["actor"]) for e in backend.json("/api/audit?limit=50")]
    for entry in (
        ("consent.record", "emp-0001", "hana"),
        ("subject.enrol", "emp-0001", "hana"),
        ("subject.enrol.refused", "emp-0042", "hana"),
        ("event.correct", match, "hana"),
        ("export.attendance", f"{day}..{day}", "hana"),
    ):
        assert entry in audit, entry


def test_a_viewer_sees_decisions_but_cannot_enrol_correct_or_export(site) -> None:
    from selenium.webdriver.common.by import By

    backend, (_, stranger, again, _) = site["backend"], site["ids"]
    browser = chromium(site["tmp"] / "downloads-viewer")
    try:
        _login(browser, backend.url, "vic")
        assert "vic (viewer)" in browser.find_element(By.ID, "who").text
        assert not browser.find_elements(By.CSS_SELECTOR, "button.enrol-event, button.not-this-person")
        assert not browser.find_element(By.ID, "csv-days").is_displayed()
        assert not browser.find_element(By.ID, "enrol-open").is_displayed()
        assert not browser.find_element(By.ID, "admin").is_displayed()
        assert "thumbnail not shown to your role" in _card(browser, again).text
        assert "nearest" not in _card(browser, again).text
        _shot(browser, "06-viewer")
        day = str(site["yesterday"])
        assert _fetch(browser, f"api/attendance/days?from={day}&to={day}") == 200
        for path in (
            f"api/attendance/days.csv?from={day}&to={day}",
            f"api/attendance/days.xlsx?from={day}&to={day}",
            "api/attendance.csv",
            f"api/events/{again}/thumbnail",
            f"api/events/{again}/raw",
        ):
            assert _fetch(browser, path) == 403, path
        consent = {"person_name": "X", "method": "paper"}
        assert (
            _fetch(browser, f"api/events/{again}/enrol", "POST", {"subject": "emp-0099", "consent": consent})
            == 403
        )
        assert (
            _fetch(browser, f"api/events/{stranger}/correct", "POST", {"subject": None, "reason": "x"}) == 403
        )
    finally:
        browser.quit()


def test_an_admin_overrides_a_duplicate_with_a_reason_and_verifies_the_audit_log(site) -> None:
    from selenium.webdriver.common.by import By

    backend, (_, _, again, _) = site["backend"], site["ids"]
    browser = chromium(site["tmp"] / "downloads-admin")
    try:
        _login(browser, backend.url, "ada")
        _until(browser, lambda: _card(browser, again).find_element(By.CSS_SELECTOR, "button.enrol-event"))
        _press(browser, again, "button.enrol-event")
        form = browser.find_element(By.ID, "enrol")
        form.find_element(By.NAME, "subject").send_keys("emp-0042")
        form.find_element(By.NAME, "person_name").send_keys("Hana Silva")
        form.find_element(By.NAME, "consent_given").click()
        browser.find_element(By.ID, "enrol-submit").click()
        _until(browser, lambda: form.find_element(By.NAME, "override").is_displayed())
        form.find_element(By.NAME, "override").click()
        form.find_element(By.NAME, "override_reason").send_keys("twin sister, checked in person")
        browser.find_element(By.ID, "enrol-submit").click()
        _until(
            browser, lambda: "enrolled: gallery version 2" in browser.find_element(By.ID, "enrol-result").text
        )
        browser.find_element(By.ID, "audit-verify").click()
        _until(browser, lambda: "the chain holds" in browser.find_element(By.ID, "audit-result").text)
        browser.find_element(By.ID, "admin").location_once_scrolled_into_view  # noqa: B018 - into the screenshot
        _shot(browser, "07-admin-audit")
    finally:
        browser.quit()
    override = next(e for e in backend.json("/api/audit?limit=50") if e["action"] == "subject.enrol.override")
    assert (
        override["target"] == "emp-0042" and override["details"]["reason"] == "twin sister, checked in person"
    )
    assert override["actor"] == "ada" and override["details"]["other"] == "emp-0001"
    verified = subprocess.run(
        [sys.executable, "-m", "device", "backend", "audit", "verify", "--config", str(site["conf"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0 and "audit log OK" in verified.stdout
    image = cv2.imread(str(artefacts() / "07-admin-audit.png"))
    assert image is not None and np.asarray(image).std() > 0
