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


def words(view: View, cat: Catalogue, alternative: str) -> Words:  # noqa: PLR0911 - one case per screen
    banner = cat.text("enrol.started", name=view.enrolment) if view.enrolment else None
    if view.screen == "idle":
        return Words(banner or cat.text("screen.look"))
    if view.screen == "positioning":
        return Words(cat.text(view.hint) if view.hint else cat.text("screen.hold"), banner=banner)
    if view.screen == "challenge":
        if view.step not in STEP_CODES:  # a retry before its fresh step
            return Words(cat.text("challenge.retry"), banner=banner)
        retry = cat.text("challenge.retry") if view.retry else None
        return Words(cat.text(STEP_CODES[view.step]), before=retry, banner=banner)
    if view.screen == "checking":
        return Words(cat.text("challenge.passed"), banner=banner)
    if view.screen == "enrol":
        if view.outcome == "enrol.failed":
            return Words(cat.text("enrol.failed", reason=cat.text(view.reason or "enrol.timeout")))
        return Words(cat.text("enrol.done"))
    outcome = view.outcome or "result.rejected"
    if outcome == "result.welcome":
        return Words(cat.text("result.welcome", name=view.name) if view.name else cat.text("screen.welcome"))
    if outcome == "result.not_recognised":
        return Words(cat.text(outcome, alternative=alternative), banner=banner)
    if outcome == "result.rejected":
        headline = (
            cat.text(outcome, reason=cat.text(view.reason)) if view.reason else cat.text("screen.rejected")
        )
        return Words(headline, detail=cat.text(view.hint) if view.hint else None, banner=banner)
    return Words(cat.text(outcome), banner=banner)
