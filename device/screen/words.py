"""What a view says, in words: the lines the page shows and the voice speaks.

The page (static/screen.js, `words`) words a view the same way from the same catalogue; the browser tests
compare what the page shows with these lines for every view of a replayed pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.contracts import STEP_CODES
from device.screen.catalogue import Catalogue
from device.screen.state import View


@dataclass(frozen=True)
class Words:
    headline: str
    before: str | None = None  # above the headline: "Let's try again"
    detail: str | None = None  # below it: a hint with a rejection
    banner: str | None = None  # an enrolment at the door, over every screen but its own outcome

    def spoken(self) -> str:
        return " ".join(s.rstrip(".") + "." for s in (self.before, self.headline, self.detail) if s)


WAYS = ("badge", "qr", "pin")  # the order credentials are named in


def ways(view: View, cat: Catalogue) -> str:
    """The credentials the door takes, in words: "your badge, your QR code or the keypad"."""
    named = [cat.text(f"way.{kind}") for kind in WAYS if kind in (view.takes or ())]
    if len(named) < 2:
        return named[0] if named else ""
    return cat.text("way.list", first=", ".join(named[:-1]), last=named[-1])


def idle_words(view: View, cat: Catalogue) -> str:
    """What to do to begin, as the door's mode says."""
    if view.mode in (None, "face") or not view.takes:
        return cat.text("screen.look")
    return cat.text(f"idle.{view.mode}", ways=ways(view, cat))


def alternative_words(view: View, cat: Catalogue, alternative: str) -> str:
    """Where a person the face did not let in goes: this door's credentials, the policy's alternative door,
    or (no door policy) the site's configured alternative."""
    if view.alternative_door:
        return cat.text("way.door", door=view.alternative_door)
    if view.mode in ("credential", "face|credential") and view.takes:
        return ways(view, cat)
    return alternative


def words(view: View, cat: Catalogue, alternative: str) -> Words:  # noqa: PLR0911 - one case per screen
    banner = cat.text("enrol.started", name=view.enrolment) if view.enrolment else None
    if view.screen == "idle":
        return Words(banner or idle_words(view, cat))
    if view.screen == "keypad":
        return Words(cat.text(f"keypad.{view.keypad or 'number'}"), banner=banner)
    if view.screen == "look":
        return Words(cat.text("access.look"), banner=banner)
    if view.screen == "positioning":
        return Words(cat.text(view.hint) if view.hint else cat.text("screen.hold"), banner=banner)
    if view.screen == "challenge":
        if view.step not in STEP_CODES:  # a retry before its fresh step
            return Words(cat.text("challenge.retry"), banner=banner)
        retry = cat.text("challenge.retry") if view.retry else None
        return Words(cat.text(STEP_CODES[view.step]), before=retry, banner=banner)
    if view.screen == "checking":
        return Words(cat.text(view.outcome or "challenge.passed"), banner=banner)
    if view.screen == "enrol":
        if view.outcome == "enrol.failed":
            return Words(cat.text("enrol.failed", reason=cat.text(view.reason or "enrol.timeout")))
        return Words(cat.text("enrol.done"))
    return _outcome_words(view, cat, alternative, banner)


def _outcome_words(view: View, cat: Catalogue, alternative: str, banner: str | None) -> Words:
    outcome = view.outcome or "result.rejected"
    if outcome == "result.welcome":
        return Words(cat.text("result.welcome", name=view.name) if view.name else cat.text("screen.welcome"))
    if outcome == "result.not_recognised":
        return Words(cat.text(outcome, alternative=alternative_words(view, cat, alternative)), banner=banner)
    if outcome == "access.claim_first":
        return Words(cat.text(outcome, ways=ways(view, cat)), banner=banner)
    if outcome == "result.rejected":
        headline = (
            cat.text(outcome, reason=cat.text(view.reason)) if view.reason else cat.text("screen.rejected")
        )
        return Words(headline, detail=cat.text(view.hint) if view.hint else None, banner=banner)
    return Words(cat.text(outcome), banner=banner)
