"""The privacy audit's checks: pure functions over the messages a terminal published.

Given every message seen on a terminal's namespace, find every image anywhere in it (base64 or
data: URLs inside JSON, or raw bytes), decode it, and judge each rule:

- image_size:       no image is larger than the policy size (longest side, pixels);
- face_only:        every image is exactly black outside the ellipse inscribed in it;
- image_metadata:   no image carries metadata (JPEG APP1..APP15/COM; PNG: any chunk but IHDR, PLTE,
                    IDAT, IEND, and any byte after IEND);
- biometric_sealed: (when sealing is required) no embedding or thumbnail travels in the clear and
                    every face event's biometric part is sealed (to the expected backend key);
- signatures:       (when the terminal's public key is given) every face event is validly signed;
- personal_text:    (when names are given: --names, --gallery-config) no payload, sent by the terminal or to it,
                    holds a display name in the clear or in a base64 blob (device/privacy/personal.py; what
                    the backend sends a terminal is sealed to it: device/privacy/terminalseal.py);
- prompts_coded:    every prompt carries codes and numbers only (no free-text field a name could ride in);
- screen_no_images: (with --screen) no message on the door screen's loopback channel carries image bytes;
- events_observed:  at least one face event was seen (otherwise the audit proves nothing).

Messages on command-request and desired-config topics come from the backend, not the terminal: they are
listed, and judged only by personal_text (a name must not cross the broker in either direction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from device.privacy import seal as sealing
from device.privacy.imagescan import ImageFinding, decode_base64, find_images, images_in_json
from device.privacy.personal import personal_text, prompt_free_text
from device.privacy.screen_audit import ScreenFinding, screen_verdict
from device.privacy.signing import SignatureError, verify_payload
from device.wire.bounded import PayloadError, loads_bounded

AUDIT_SCHEMA = 1
BIOMETRIC_KEYS = ("embedding", "template", "thumbnail")
MIN_VECTOR_LEN = 16  # a list of numbers at least this long under a biometric key is an embedding


@dataclass(frozen=True)
class AuditPolicy:
    max_image_size: int = 112
    require_sealed: bool = False
    backend_fingerprint: str | None = None  # sealed blobs must name this recipient
    terminal_public_key: bytes | None = None  # check face-event signatures
    backend_private_key: bytes | None = None  # open sealed blobs and audit the images inside
    identity_send: str | None = (
        None  # identity.send_embedding the terminal claims: unknown_only | never | always
    )
    names: tuple[str, ...] = ()  # display names from the gallery, normalised (personal.usable_names)


@dataclass(frozen=True)
class MessageFinding:
    topic: str
    size: int
    retained: bool
    inbound: bool  # sent to the terminal (command request, desired config), not by it
    kind: str | None  # payload "type" when it is JSON with one
    images: tuple[ImageFinding, ...] = ()
    clear_biometric: tuple[str, ...] = ()  # JSON paths of embedding/thumbnail fields in the clear
    sealed_recipients: tuple[str, ...] = ()
    signature: str = "unchecked"  # valid | invalid: ... | absent | unchecked
    notes: tuple[str, ...] = field(default=())
    matched: bool = False  # a face event whose match names a subject (identified on the terminal)
    personal: tuple[str, ...] = ()  # where a display name appears (JSON path: name #n)
    free_text: tuple[str, ...] = ()  # keys of a prompt that are not codes or numbers

    @property
    def is_face_event(self) -> bool:
        return self.kind == "event.face" or self.topic.endswith("/event/face")


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    passed: bool | None  # None: not applicable under this policy
    detail: str


def is_inbound(topic: str) -> bool:
    return "/cmd/req/" in topic or topic.endswith("/config/desired")


def _carries_data(value: Any) -> bool:
    """A base64 blob or a long list of numbers: data, as opposed to a setting such as thumbnail = "face"."""
    if isinstance(value, str):
        return decode_base64(value) is not None
    if isinstance(value, list):
        return len(value) >= MIN_VECTOR_LEN and all(isinstance(v, int | float) for v in value)
    return False


def clear_biometric_paths(document: Any, path: str = "") -> list[str]:
    """JSON paths of embedding/template/thumbnail fields that carry readable data."""
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            child = f"{path}.{key}" if path else str(key)
            if key in BIOMETRIC_KEYS and _carries_data(value):
                found.append(child)
            else:
                found += clear_biometric_paths(value, child)
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found += clear_biometric_paths(value, f"{path}[{i}]")
    return found


def _sealed_blobs(document: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(document, dict):
        if document.get("alg") == sealing.ALG and "ciphertext" in document:
            return [(path, document)]
        for key, value in document.items():
            out += _sealed_blobs(value, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            out += _sealed_blobs(value, f"{path}[{i}]")
    return out


def inspect_message(topic: str, payload: bytes, retained: bool, policy: AuditPolicy) -> MessageFinding:
    inbound = is_inbound(topic)
    try:
        document = loads_bounded(payload, len(payload))  # the audit reads what it is given, at any size
    except PayloadError as exc:
        return MessageFinding(
            topic,
            len(payload),
            retained,
            inbound,
            None,
            tuple(find_images(payload, "payload")),
            notes=(f"not JSON ({exc.code})",),
            personal=tuple(personal_text(None, payload, policy.names)),
        )
    kind = document.get("type") if isinstance(document, dict) else None
    images = images_in_json(document)
    notes: list[str] = []
    blobs = _sealed_blobs(document)
    if policy.backend_private_key is not None:
        for path, blob in blobs:
            try:
                content = sealing.open_sealed(policy.backend_private_key, blob)
            except sealing.SealError as exc:
                notes.append(f"{path}: cannot open: {exc}")
                continue
            images += images_in_json(content, f"{path}+sealed")
    signature = "unchecked"
    if policy.terminal_public_key is not None and isinstance(document, dict) and not inbound:
        signature = "absent"
        if "signature" in document:
            try:
                verify_payload(document, policy.terminal_public_key)
                signature = "valid"
            except SignatureError as exc:
                signature = f"invalid: {exc}"
    return MessageFinding(
        topic,
        len(payload),
        retained,
        inbound,
        kind if isinstance(kind, str) else None,
        tuple(images),
        tuple(clear_biometric_paths(document)),
        tuple(str(blob.get("recipient")) for _, blob in blobs),
        signature,
        tuple(notes),
        _matched(document),
        tuple(personal_text(document, payload, policy.names)),
        tuple(prompt_free_text(document)),
    )


def _matched(document: Any) -> bool:
    match = document.get("match") if isinstance(document, dict) else None
    return isinstance(match, dict) and match.get("subject") is not None


def _minimisation(events: list[MessageFinding], policy: AuditPolicy, listing) -> RuleVerdict:
    """identity.send_embedding as claimed: unknown_only = no biometric (clear or sealed) with a match;
    never = no biometric in any face event."""
    if policy.identity_send is None or policy.identity_send == "always":
        return RuleVerdict("identity_minimised", None, "not checked (no --identity-send unknown_only|never)")
    judged = [f for f in events if f.matched or policy.identity_send == "never"]
    carrying = [
        f"{f.topic}: {'matched ' if f.matched else ''}face event carries "
        + ", ".join([*f.clear_biometric, *(["a sealed blob"] if f.sealed_recipients else [])])
        for f in judged
        if f.clear_biometric or f.sealed_recipients or f.images
    ]
    matched = sum(f.matched for f in events)
    return RuleVerdict(
        "identity_minimised",
        not carrying,
        f"{len(judged)} face event(s) judged ({matched} matched on the terminal), none carries a biometric"
        if not carrying
        else listing(carrying),
    )


def judge(findings: list[MessageFinding], policy: AuditPolicy) -> list[RuleVerdict]:
    outbound = [f for f in findings if not f.inbound]
    images = [(f.topic, img) for f in outbound for img in f.images]
    events = [f for f in outbound if f.is_face_event]

    def listing(items: list[str]) -> str:
        return "; ".join(items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")

    verdicts = []
    big = [
        f"{t} {i.where}: {i.width}x{i.height}"
        for t, i in images
        if max(i.width, i.height) > policy.max_image_size
    ]
    verdicts.append(
        RuleVerdict(
            "image_size",
            not big,
            f"{len(images)} image(s), none larger than {policy.max_image_size}px"
            if not big
            else f"larger than {policy.max_image_size}px: {listing(big)}",
        )
    )
    leaks = [
        f"{t} {i.where}: "
        + (
            "not decodable, cannot be checked"
            if not i.decodable
            else f"{i.outside_ellipse_nonzero} pixels outside the face ellipse are not black"
        )
        for t, i in images
        if not i.decodable or i.outside_ellipse_nonzero
    ]
    verdicts.append(
        RuleVerdict(
            "face_only",
            not leaks,
            "every image is exactly black outside its face ellipse" if not leaks else listing(leaks),
        )
    )
    tagged = [f"{t} {i.where}: {', '.join(i.metadata)}" for t, i in images if i.metadata]
    verdicts.append(
        RuleVerdict(
            "image_metadata", not tagged, "no image carries metadata" if not tagged else listing(tagged)
        )
    )
    if policy.require_sealed:
        problems = [f"{f.topic}: {p} in the clear" for f in outbound for p in f.clear_biometric]
        problems += [
            f"{f.topic}: image {i.where} in the clear"
            for f in outbound
            for i in f.images
            if "+sealed" not in i.where
        ]
        problems += [
            f"{f.topic}: face event without a sealed blob" for f in events if not f.sealed_recipients
        ]
        if policy.backend_fingerprint is not None:
            problems += [
                f"{f.topic}: sealed to {r}, expected {policy.backend_fingerprint}"
                for f in outbound
                for r in f.sealed_recipients
                if r != policy.backend_fingerprint
            ]
        # A rule over face events proves nothing about zero of them: not judged, never a pass.
        verdicts.append(
            RuleVerdict(
                "biometric_sealed",
                False if problems else (True if events else None),
                listing(problems)
                if problems
                else f"all {len(events)} face event(s) sealed, nothing biometric in the clear"
                if events
                else "no face event to check (nothing biometric in the clear elsewhere)",
            )
        )
    else:
        verdicts.append(
            RuleVerdict("biometric_sealed", None, "not required (no --backend-key / --require-sealed)")
        )
    if policy.terminal_public_key is not None:
        bad = [f"{f.topic}: {f.signature}" for f in events if f.signature != "valid"]
        verdicts.append(
            RuleVerdict(
                "signatures",
                False if bad else (True if events else None),
                listing(bad)
                if bad
                else f"all {len(events)} face event(s) validly signed"
                if events
                else "no face event to check",
            )
        )
    else:
        verdicts.append(RuleVerdict("signatures", None, "not checked (no --terminal-key)"))
    verdicts.append(_minimisation(events, policy, listing))
    verdicts += text_verdicts(findings, bool(policy.names), listing)
    verdicts.append(
        RuleVerdict(
            "events_observed",
            True if events else None,  # None: the audit is inconclusive, not failed
            f"{len(events)} face event(s) among {len(outbound)} outbound message(s)"
            if events
            else f"no face event among {len(outbound)} outbound message(s): nothing to judge",
        )
    )
    return verdicts


def text_verdicts(findings: list[MessageFinding], names_given: bool, listing) -> list[RuleVerdict]:
    """personal_text and prompts_coded. A display name fails the audit in either direction: what the backend
    sends a terminal (gallery data, an enrolment's name) travels sealed to that terminal, never readable."""
    outbound = [f for f in findings if not f.inbound]
    if names_given:
        hits = [f"{'<-' if f.inbound else '->'} {f.topic} {where}" for f in findings for where in f.personal]
        personal = RuleVerdict(
            "personal_text",
            not hits,
            f"no display name in {len(findings)} message(s), either way" if not hits else listing(hits),
        )
    else:
        personal = RuleVerdict("personal_text", None, "not checked (no --names / --gallery-config)")
    prompts = [f for f in outbound if f.kind == "prompt"]
    free = [f"{f.topic}: {', '.join(f.free_text)}" for f in prompts if f.free_text]
    coded = RuleVerdict(
        "prompts_coded",
        not free if prompts else None,
        (f"{len(prompts)} prompt(s), codes and numbers only" if prompts else "no prompt seen")
        if not free
        else "free text in prompts: " + listing(free),
    )
    return [personal, coded]


def audit_result(
    findings: list[MessageFinding], policy: AuditPolicy, screen: list[ScreenFinding] | None = None
) -> dict[str, Any]:
    """The whole audit as JSON-ready data: policy, every message, every verdict, the overall result.
    `screen`: what was read from the door screen's channel (None: not watched)."""
    verdicts = judge(findings, policy)
    if screen is None:
        verdicts.append(RuleVerdict("screen_no_images", None, "not checked (no --screen)"))
    else:
        verdicts.append(RuleVerdict("screen_no_images", *screen_verdict(screen)))
    if any(v.passed is False for v in verdicts):
        overall = "fail"
    elif any(v.rule == "events_observed" and v.passed is None for v in verdicts):
        overall = "inconclusive"
    else:
        overall = "pass"
    return {
        "schema": AUDIT_SCHEMA,
        "result": overall,
        "policy": {
            "max_image_size": policy.max_image_size,
            "require_sealed": policy.require_sealed,
            "backend_fingerprint": policy.backend_fingerprint,
            "terminal_key_given": policy.terminal_public_key is not None,
            "sealed_blobs_opened": policy.backend_private_key is not None,
        },
        "verdicts": [asdict(v) for v in verdicts],
        "messages": [{**asdict(f), "face_event": f.is_face_event} for f in findings],
        "screen_messages": [asdict(f) for f in screen] if screen is not None else None,
    }


def message_line(finding: MessageFinding) -> str:
    """One line per message: direction, topic, size, type, and each image found with its checks."""
    extra = f" type={finding.kind}" if finding.kind else ""
    line = f"{'<-' if finding.inbound else '->'} {finding.topic} {finding.size} bytes{extra}"
    line += " (retained)" if finding.retained else ""
    for img in finding.images:
        line += (
            f"; image {img.where}: {img.format} {img.width}x{img.height}, {img.bytes} bytes, "
            f"non-black outside ellipse: {img.outside_ellipse_nonzero}, metadata: {list(img.metadata) or 'none'}"
        )
    return line


def render_text(result: dict[str, Any]) -> str:
    """The verdicts and the overall result (the messages were listed as they arrived: message_line)."""
    lines = []
    for v in result["verdicts"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[v["passed"]]
        if v["rule"] == "events_observed" and v["passed"] is None:
            mark = "NONE"
        lines.append(f"[{mark}] {v['rule']}: {v['detail']}")
    lines.append(f"audit result: {result['result'].upper()}")
    return "\n".join(lines)
