"""PINs and badges are stored keyed and (PINs) slow, verified without ever raising, and a QR code opens only
when a pass key signed exactly what it carries; anything from the wire is fuzzed."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from device.access import credentials as cr
from device.access.passes import PassRefused, Token, UsedPasses, check_window, issue, read
from tests.access_parts import KEY, member_code, visitor_pass


def test_a_pin_is_an_argon2id_hash_of_a_keyed_hash_and_verifies_only_for_its_number() -> None:
    stored = cr.hash_pin(KEY, "4242", "2468")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and "2468" not in stored
    assert cr.hash_pin(KEY, "4242", "2468") != stored  # a salt of its own
    assert cr.verify_pin(KEY, "4242", "2468", stored)
    assert not cr.verify_pin(KEY, "4242", "2469", stored)
    assert not cr.verify_pin(KEY, "4243", "2468", stored)  # another number's PIN
    assert not cr.verify_pin(bytes(32), "4242", "2468", stored)  # another site's key
    with pytest.raises(ValueError):
        cr.hash_pin(KEY, "1", "12")  # too short


def test_a_stored_pin_that_asks_for_too_much_work_is_refused_without_running() -> None:
    costly = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43
    started = time.perf_counter()
    assert not cr.verify_pin(KEY, "1", "1234", costly)
    assert time.perf_counter() - started < 0.05


def test_a_badge_is_a_keyed_hash_of_its_number() -> None:
    stored = cr.badge_hash(KEY, "0012345678")
    assert len(stored) == 64 and "12345678" not in stored
    assert cr.badge_hash(KEY, "12345678") == stored  # leading zeros are not part of the card
    assert cr.badge_hash(KEY, "abc") == cr.badge_hash(KEY, "ABC")
    assert cr.badge_hash(bytes(32), "12345678") != stored
    for bad in ("", "12 34", "x" * 33, "12;4"):
        with pytest.raises(ValueError):
            cr.badge_hash(KEY, bad)


def test_the_credential_key_file_is_made_once(tmp_path) -> None:
    path = tmp_path / "credential.key"
    cr.keygen(path)
    assert len(cr.load_key(path)) == 32 and (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(FileExistsError):
        cr.keygen(path)


@settings(max_examples=60, deadline=None)
@given(number=st.text(max_size=20), pin=st.text(max_size=20), stored=st.text(max_size=120))
def test_pin_verification_never_raises(number: str, pin: str, stored: str) -> None:
    assert cr.verify_pin(KEY, number, pin, stored) in (True, False)


@settings(max_examples=200, deadline=None)
@given(code=st.text(max_size=40))
def test_badge_codes_from_a_reader_hash_or_are_refused(code: str) -> None:
    with contextlib.suppress(ValueError):
        assert len(cr.badge_hash(KEY, code)) == 64


# ---- QR codes -------------------------------------------------------------------------------------------
PASS_KEY = SigningKey(bytes(range(1, 33)))
PASS_KEYS = [base64.b64encode(bytes(PASS_KEY.verify_key)).decode()]


def test_a_signed_visitor_pass_reads_back_and_its_window_is_checked() -> None:
    now = 1_780_000_000.0
    token = read(visitor_pass(PASS_KEY, now), PASS_KEYS)
    assert (token.k, token.sub, token.doors, token.uses) == ("visitor", "visitor-17", ["side"], 1)
    check_window(token, now)
    with pytest.raises(PassRefused, match=r"access\.pass_not_yet_valid"):
        check_window(token, token.nbf - 1)
    with pytest.raises(PassRefused, match=r"access\.pass_expired"):
        check_window(token, token.exp)
    member = read(member_code(PASS_KEY, now), PASS_KEYS)
    assert (member.k, member.sub, member.doors, member.uses) == ("member", "ann", [], 0)


def test_a_pass_signed_by_another_key_or_altered_is_forged() -> None:
    now = time.time()
    other = visitor_pass(SigningKey.generate(), now)
    with pytest.raises(PassRefused, match=r"access\.pass_forged"):
        read(other, PASS_KEYS)
    prefix, body, sig = visitor_pass(PASS_KEY, now).split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["uses"] = 1000  # a pass that opens forever
    changed = base64.urlsafe_b64encode(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(PassRefused, match=r"access\.pass_forged"):
        read(f"{prefix}.{changed.rstrip(b'=').decode()}.{sig}", PASS_KEYS)
    with pytest.raises(PassRefused, match=r"access\.pass_forged"):
        read(visitor_pass(PASS_KEY, now), [])  # no pass key in the policy: nothing is a pass


def test_a_pass_that_could_never_be_valid_is_not_issued() -> None:
    with pytest.raises(ValueError):
        visitor_pass(PASS_KEY, time.time(), uses=0)
    with pytest.raises(ValueError):
        visitor_pass(PASS_KEY, time.time(), doors=[])
    with pytest.raises(ValueError):
        issue(PASS_KEY, {"k": "member", "id": "abcdefgh", "sub": "ann", "nbf": 10, "exp": 5})


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.builds(lambda a, b: f"FO1.{a}.{b}", st.text(max_size=200), st.text(max_size=100)),
        st.builds(
            lambda raw: "FO1." + base64.urlsafe_b64encode(raw).decode() + "." + "A" * 86,
            st.binary(max_size=300),
        ),
    )
)
def test_any_qr_text_is_a_pass_or_refused_with_a_code(text: str) -> None:
    try:
        assert isinstance(read(text, PASS_KEYS), Token)
    except PassRefused as refused:
        assert refused.code in ("access.pass_malformed", "access.pass_forged")


def test_uses_of_a_pass_are_counted_on_disk_and_survive_a_restart(tmp_path) -> None:
    now = time.time()
    token = read(visitor_pass(PASS_KEY, now, uses=2), PASS_KEYS)
    used = UsedPasses(tmp_path / "passes-used.json")
    assert used.used(token) == 0
    used.use(token, now)
    assert UsedPasses(tmp_path / "passes-used.json").used(token) == 1
    used.use(token, now)
    assert UsedPasses(tmp_path / "passes-used.json").used(token) == 2
    used.use(read(visitor_pass(PASS_KEY, now, id="visit-000002"), PASS_KEYS), token.exp + 1)
    assert UsedPasses(tmp_path / "passes-used.json").used(token) == 0  # forgotten once it expired
    (tmp_path / "passes-used.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        UsedPasses(tmp_path / "passes-used.json")
