"""The door policy: built from its source with no clear credential left, checked across fields (invariant 6:
the face is never the only way in), signed, refused with a reason when it cannot be trusted, stored encrypted
and verified again at load; any body from the wire is a policy or a refusal, never an exception."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.secret import SecretBox

from device.access import credentials as cr
from device.access import document as doc
from device.access.build import build
from device.access.policy import AccessPolicy
from tests.access_parts import KEY, new_signer, policy_of, signed, source

SIGNER = new_signer()
STORED_PIN = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$" + "A" * 22


@pytest.fixture(scope="module")
def update():
    return signed(source(), SIGNER, version=3)


def test_the_built_policy_holds_no_clear_credential(update) -> None:
    text = update.body.decode()
    for clear in ('"2468"', '"1357"', '"9999"', "0012345678", '"77"'):
        assert clear not in text
    policy = policy_of(update)
    ann = policy.people["ann"]
    assert ann.pin is not None and cr.verify_pin(KEY, "4242", "2468", ann.pin)
    assert ann.badges == [cr.badge_hash(KEY, "12345678")]
    assert update.manifest["version"] == 3 and update.manifest["kind"] == "faceonly.access"


def test_building_a_clear_credential_needs_the_key() -> None:
    with pytest.raises(ValueError, match="credential-key"):
        build(source(), None, SIGNER, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["doors"]["main"].pop("alternative_door"), "never the only way in"),
        (lambda s: s["doors"]["turnstile"].update(alternative_door="main"), "takes a credential alone"),
        (lambda s: s["doors"]["turnstile"].update(alternative_door="nowhere"), "takes a credential alone"),
        (lambda s: s["doors"]["side"].update(credentials=[]), "at least one credential"),
        (lambda s: s["groups"]["staff"]["doors"].update(attic="always"), "no door 'attic'"),
        (lambda s: s["groups"]["office"]["doors"].update(main="weekends"), "no schedule 'weekends'"),
        (lambda s: s["people"]["bo"].update(groups=["admins"]), "no group 'admins'"),
        (lambda s: s["people"]["bo"].update(number="4242"), "same keypad number"),
        (lambda s: s["people"]["bo"].update(badges=["12345678"]), "same badge"),
        (lambda s: s["people"]["bo"].pop("number"), "go together"),
        (lambda s: s["site"].update(timezone="Mars/Olympus"), "unknown time zone"),
        (lambda s: s["schedules"].update(always={}), "built in"),
        (lambda s: s["doors"]["main"].update(mode="face-or-else"), "mode"),
        (lambda s: s.update(extra=1), "extra"),
    ],
)
def test_a_policy_that_cannot_be_acted_on_is_refused(change, message) -> None:
    src = copy.deepcopy(source())
    for person in src["people"].values():
        person["pin"] = STORED_PIN  # already in its stored form: the build has nothing slow to do
    change(src)
    with pytest.raises(ValueError, match=message):
        build(src, KEY, SIGNER, 1)


def test_the_manifest_is_checked_before_the_body(update) -> None:
    key = SIGNER.public_key
    checked = doc.check_manifest(update.manifest, key)
    assert doc.read_body(checked, update.body).people.keys() == {"ann", "bo", "cy"}
    with pytest.raises(doc.PolicyRefused) as refused:
        doc.check_manifest({k: v for k, v in update.manifest.items() if k != "signature"}, key)
    assert refused.value.reason == "unsigned"
    with pytest.raises(doc.PolicyRefused) as refused:
        doc.check_manifest(update.manifest, new_signer().public_key)
    assert refused.value.reason == "forged"
    with pytest.raises(doc.PolicyRefused) as refused:
        doc.check_manifest({**update.manifest, "version": 4}, key)  # altered after signing
    assert refused.value.reason == "forged"
    with pytest.raises(doc.PolicyRefused) as refused:
        doc.read_body(checked, update.body + b" ")
    assert refused.value.reason == "forged"
    with pytest.raises(doc.PolicyRefused) as refused:
        doc.check_newer(checked, 3)
    assert refused.value.reason == "not_newer"


def test_a_signed_body_that_is_not_a_valid_policy_is_refused_naming_the_field() -> None:
    body = json.dumps({"schema": 1, "site": {"timezone": "UTC"}, "doors": {}}).encode()
    manifest = doc.make_manifest(SIGNER, 1, body)
    with pytest.raises(doc.PolicyRefused, match="doors") as refused:
        doc.read_body(doc.check_manifest(manifest, SIGNER.public_key), body)
    assert refused.value.reason == "malformed"


def test_the_stored_policy_is_encrypted_and_verified_at_load(tmp_path, update) -> None:
    box = SecretBox(bytes(32))
    store = doc.PolicyStore(tmp_path / "access.sealed", box)
    assert store.load(SIGNER.public_key) is None
    store.save(update.manifest, update.body)
    raw = (tmp_path / "access.sealed").read_bytes()
    assert b"faceonly.access" not in raw and b"argon2id" not in raw
    manifest, policy = store.load(SIGNER.public_key)
    assert manifest["version"] == 3 and isinstance(policy, AccessPolicy)
    with pytest.raises(doc.PolicyRefused, match="forged"):
        store.load(new_signer().public_key)
    with pytest.raises(doc.PolicyRefused, match="damaged"):
        doc.PolicyStore(tmp_path / "access.sealed", SecretBox(bytes([1]) * 32)).load(SIGNER.public_key)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        JSONISH.map(lambda v: json.dumps(v).encode()),
        st.builds(
            lambda doors, people: json.dumps(
                {"schema": 1, "site": {"timezone": "UTC"}, "doors": doors, "people": people}
            ).encode(),
            st.dictionaries(st.text(max_size=8), JSONISH, max_size=3),
            st.dictionaries(st.text(max_size=8), JSONISH, max_size=3),
        ),
    )
)
def test_any_signed_body_is_a_policy_or_a_refusal(body: bytes) -> None:
    manifest = doc.check_manifest(doc.make_manifest(SIGNER, 1, body or b"x"), SIGNER.public_key)
    try:
        assert isinstance(doc.read_body(manifest, body or b"x"), AccessPolicy)
    except doc.PolicyRefused as refused:
        assert refused.reason in ("malformed", "forged")


@settings(max_examples=150, deadline=None)
@given(manifest=JSONISH)
def test_any_manifest_is_checked_or_refused(manifest) -> None:
    with pytest.raises(doc.PolicyRefused):
        doc.check_manifest(manifest, SIGNER.public_key)
