"""The page's people API: subjects, consent, enrolment (at a terminal, or from an unknown event), removal
with purge receipts, and corrections of recognition.

GET    /api/subjects                      people, their status, consent, last pass; the gallery version
GET    /api/subjects/{id}                 one person: consents, purge receipts
PATCH  /api/subjects/{id}                 {group?, end_date?}
POST   /api/subjects/{id}/consent         {person_name, method: paper|electronic, given_at?}
DELETE /api/subjects/{id}/consent         consent withdrawn: templates purged everywhere (a receipt)
POST   /api/subjects/{id}/enroll          walk-up: {terminal, display_name?, group?, end_date?, timeout_s?,
                                          consent?, override?: {others: [...], reason}}
POST   /api/subjects/{id}/deactivate      templates purged everywhere, records kept (a receipt)
DELETE /api/subjects/{id}                 erased: templates purged everywhere, records kept or anonymised
GET    /api/consent-text                  the consent text in force (version, sha256, text)
GET    /api/purges, /api/purges/{id}      purge receipts: which terminals confirmed, when
POST   /api/events/{id}/enrol             an unknown person from their event: {subject, ...as enroll}
POST   /api/events/{id}/correct           "not this person": {subject: the right one or null, reason}
GET    /api/confusions                    subjects confused again and again
A duplicate is refused with 409 and `clashes` naming the subjects it scores as.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from device.identity.gallery import ID_PATTERN
from faceonly_backend.attendance import AttendanceError
from faceonly_backend.consent import ConsentError
from faceonly_backend.corrections import CorrectionError
from faceonly_backend.enrol import Details, DuplicateError, EnrolError, Override
from faceonly_backend.removal import RemovalError
from faceonly_backend.web_common import json_body, need, text

if TYPE_CHECKING:
    from faceonly_backend.service import BackendService

REFUSALS = (EnrolError, ConsentError, RemovalError, CorrectionError, AttendanceError, OSError, RuntimeError)


def _subject(request: Request) -> str:
    subject = request.path_params["subject"]
    if not ID_PATTERN.match(subject):
        raise HTTPException(400, f"a subject id matches {ID_PATTERN.pattern}")
    return subject


def _details(body: dict[str, Any]) -> Details:
    consent = body.get("consent")
    if consent is not None and not isinstance(consent, dict):
        raise HTTPException(400, "consent must be an object {person_name, method, given_at?}")
    override = body.get("override")
    made = None
    if override is not None:
        others = override.get("others") if isinstance(override, dict) else None
        reason = text(override, "reason", required=True) if isinstance(override, dict) else None
        if not isinstance(others, list) or not others or not all(isinstance(o, str) for o in others):
            raise HTTPException(400, "override must be {others: [subject ids it scores as], reason}")
        made = Override(tuple(others), str(reason))
    return Details(
        text(body, "display_name", limit=128),
        text(body, "group", limit=64),
        text(body, "end_date", limit=10),
        consent,
        made,
    )


async def _run(fn, *args) -> Response:
    """The back office call on a worker thread; a refusal is a 409 saying why (duplicates naming whom)."""
    try:
        result = await run_in_threadpool(fn, *args)
    except DuplicateError as exc:
        return JSONResponse({"error": str(exc), "clashes": [c.as_json() for c in exc.clashes]}, 409)
    except REFUSALS as exc:
        return JSONResponse({"error": str(exc)}, 409)
    return JSONResponse(result.as_json() if hasattr(result, "as_json") else result)


def routes(service: BackendService) -> list[Route]:  # noqa: C901, PLR0915 - one small nested handler per route
    office = service.office

    def listing() -> dict[str, Any]:
        seen = office.people.last_seen()
        consented = {p.id for p in office.people.all() if office.consents.active(p.id) is not None}
        text_in_force = office.consents.text
        return {
            "gallery_version": office.gallery.version,
            "threshold_meaning": office.gallery.threshold_meaning,
            "profile": service.cfg.site.profile,
            "consent_text": None
            if text_in_force is None
            else {"version": text_in_force[0], "sha256": text_in_force[1]},
            "subjects": [
                p.as_json(seen.get(p.id)) | {"consent": p.id in consented} for p in office.people.all()
            ],
        }

    async def subjects(request: Request) -> Response:
        need(request, "subjects.view")
        return JSONResponse(await run_in_threadpool(listing))

    async def one(request: Request) -> Response:
        need(request, "subjects.view")
        subject = _subject(request)
        person = await run_in_threadpool(office.people.get, subject)
        if person is None:
            return JSONResponse({"error": f"no subject {subject}"}, 404)
        consents = await run_in_threadpool(office.consents.for_subject, subject)
        receipts = await run_in_threadpool(office.purges.receipts, subject)
        return JSONResponse(
            person.as_json() | {"consents": [c.as_json() for c in consents], "purges": receipts}
        )

    async def update(request: Request) -> Response:
        actor = need(request, "subjects.enrol")
        subject, body = _subject(request), await json_body(request)
        group, end_date = text(body, "group", limit=64), text(body, "end_date", limit=10)

        def apply() -> dict[str, Any]:
            if not office.people.update(subject, group, end_date):
                raise EnrolError(f"no subject {subject}")
            office.audit.append(actor, "subject.update", subject, group=group, end_date=end_date)
            person = office.people.get(subject)
            assert person is not None
            return person.as_json()

        return await _run(apply)

    async def consent(request: Request) -> Response:
        actor = need(request, "consent.record")
        subject, body = _subject(request), await json_body(request)

        def record() -> dict[str, Any]:
            made = office.enrolment.record_consent(
                subject,
                str(body.get("person_name") or ""),
                str(body.get("method") or ""),
                body.get("given_at"),
                actor,
            )
            return made.as_json()

        return await _run(record)

    async def withdraw(request: Request) -> Response:
        actor = need(request, "consent.record")
        return await _run(office.removal.withdraw_consent, _subject(request), actor)

    async def enrol(request: Request) -> Response:
        actor = need(request, "subjects.enrol")
        subject, body = _subject(request), await json_body(request)
        terminal = text(body, "terminal", required=True, limit=128)
        timeout = float(body.get("timeout_s", 30))
        if not 1 <= timeout <= 300:
            raise HTTPException(400, "timeout_s must be 1..300")
        return await _run(office.enrolment.at_terminal, terminal, subject, actor, _details(body), timeout)

    async def from_event(request: Request) -> Response:
        actor = need(request, "subjects.enrol")
        body = await json_body(request)
        subject = text(body, "subject", required=True, limit=128)
        if not ID_PATTERN.match(str(subject)):
            raise HTTPException(400, f"a subject id matches {ID_PATTERN.pattern}")
        event_id = request.path_params["event_id"]
        return await _run(office.enrolment.from_event, event_id, subject, actor, _details(body))

    async def correct(request: Request) -> Response:
        actor = need(request, "corrections.make")
        body = await json_body(request)
        right = text(body, "subject", limit=128)
        reason = text(body, "reason", required=True)
        event_id = request.path_params["event_id"]
        return await _run(office.corrections.correct, event_id, right, reason, actor)

    async def deactivate(request: Request) -> Response:
        actor = need(request, "subjects.remove")
        body = await json_body(request)
        reason = text(body, "reason") or "deactivated by an operator"
        return await _run(office.removal.deactivate, _subject(request), actor, reason)

    async def erase(request: Request) -> Response:
        actor = need(request, "subjects.remove")
        return await _run(office.removal.erase, _subject(request), actor)

    async def consent_text(request: Request) -> Response:
        need(request, "subjects.view")
        held = office.consents.text
        if held is None:
            return JSONResponse({"version": None, "profile": service.cfg.site.profile})
        return JSONResponse(
            {"version": held[0], "sha256": held[1], "text": held[2], "profile": service.cfg.site.profile}
        )

    async def purges(request: Request) -> Response:
        need(request, "subjects.view")
        return JSONResponse(await run_in_threadpool(office.purges.receipts))

    async def purge(request: Request) -> Response:
        need(request, "subjects.view")
        found = await run_in_threadpool(office.purges.receipt, request.path_params["purge_id"])
        return JSONResponse(found) if found is not None else JSONResponse({"error": "no such purge"}, 404)

    async def confusions(request: Request) -> Response:
        need(request, "corrections.make")
        at_least = service.cfg.enrolment.confusion_report_after
        return JSONResponse(await run_in_threadpool(office.corrections.confusions, at_least))

    return [
        Route("/api/subjects", subjects),
        Route("/api/subjects/{subject}", one),
        Route("/api/subjects/{subject}", update, methods=["PATCH"]),
        Route("/api/subjects/{subject}", erase, methods=["DELETE"]),
        Route("/api/subjects/{subject}/consent", consent, methods=["POST"]),
        Route("/api/subjects/{subject}/consent", withdraw, methods=["DELETE"]),
        Route("/api/subjects/{subject}/enroll", enrol, methods=["POST"]),
        Route("/api/subjects/{subject}/deactivate", deactivate, methods=["POST"]),
        Route("/api/consent-text", consent_text),
        Route("/api/purges", purges),
        Route("/api/purges/{purge_id}", purge),
        Route("/api/events/{event_id}/enrol", from_event, methods=["POST"]),
        Route("/api/events/{event_id}/correct", correct, methods=["POST"]),
        Route("/api/confusions", confusions),
    ]
