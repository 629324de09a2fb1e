"""The page's attendance API: the per-day report, its exports (audited), manual corrections.

GET  /api/attendance/days?from=&to=&group=&subject=   per person per day (dates in the site's time zone)
GET  /api/attendance/days.csv | days.xlsx (same query) the report as a file for HR tools
GET  /api/attendance.csv?date=                       the event log of one day (UTC and local times)
GET  /api/attendance/groups                           the groups people belong to
POST /api/attendance/punches {subject, time: YYYY-MM-DDTHH:MM local, direction: in|out|both, reason}
POST /api/attendance/void {event_id, reason}          a recorded pass no longer counts
POST /api/attendance/punches/{id}/void {reason}       a manual punch taken back
"""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faceonly_backend import export
from faceonly_backend.attendance import AttendanceError
from faceonly_backend.web_common import day_range, json_body, local_time, need, text

if TYPE_CHECKING:
    from faceonly_backend.service import BackendService

MAX_EVENTS = 100_000


def routes(service: BackendService) -> list[Route]:  # noqa: C901 - one small nested handler per route
    office = service.office
    site = service.cfg.site

    def query(request: Request) -> tuple[str, str, str | None, str | None]:
        q = request.query_params
        first = q.get("from") or time.strftime("%Y-%m-%d")
        return first, q.get("to") or first, q.get("group") or None, q.get("subject") or None

    async def report(request: Request):
        first, last, group, subject = query(request)
        try:
            return await run_in_threadpool(office.attendance.report, first, last, group, subject)
        except (AttendanceError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None

    async def days(request: Request) -> Response:
        need(request, "attendance.view")
        return JSONResponse({"time_zone": site.time_zone, "days": await report(request)})

    async def download(request: Request) -> Response:
        actor = need(request, "attendance.export")
        kind = request.path_params["kind"]
        if kind not in ("csv", "xlsx"):
            raise HTTPException(404, "days.csv or days.xlsx")
        first, last, group, subject = query(request)
        rows = await report(request)
        name = f"attendance-{first}-{last}{'-' + group if group else ''}.{kind}"
        if kind == "csv":
            data, media = export.to_csv(rows, site.time_zone), "text/csv; charset=utf-8"
        else:
            data = await run_in_threadpool(
                export.to_xlsx, rows, site.time_zone, f"{site.name}: attendance {first} to {last}"
            )
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        await run_in_threadpool(
            office.audit.append,
            actor,
            "export.attendance",
            f"{first}..{last}",
            format=kind,
            group=group,
            subject=subject,
            rows=len(rows),
        )
        return Response(
            data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    async def event_log(request: Request) -> Response:
        actor = need(request, "attendance.export")
        since, until = day_range(request, site.zone)
        records = await run_in_threadpool(office.store.events, MAX_EVENTS, since, until)
        names = office.people.names()
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            [
                "time_utc",
                "terminal",
                "subject",
                "decision",
                "score",
                "reasons",
                "event_id",
                "time_local",
                "name",
                "threshold",
            ]
        )
        for r in records:
            writer.writerow(
                [
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.created_at)),
                    r.terminal,
                    r.subject or "",
                    r.decision,
                    r.score if r.score is not None else "",
                    " ".join(x["code"] for x in r.reasons),
                    r.event_id,
                    local_time(r.created_at, site.zone),
                    names.get(r.subject or "", ""),
                    r.threshold if r.threshold is not None else "",
                ]
            )
        await run_in_threadpool(
            office.audit.append,
            actor,
            "export.events",
            request.query_params.get("date") or "all",
            rows=len(records),
        )
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="attendance.csv"'},
        )

    async def groups(request: Request) -> Response:
        need(request, "attendance.view")
        return JSONResponse(await run_in_threadpool(office.attendance.groups))

    async def punch(request: Request) -> Response:
        actor = need(request, "attendance.adjust")
        body = await json_body(request)
        args = (
            text(body, "subject", required=True, limit=128),
            text(body, "time", required=True, limit=32),
            text(body, "direction", limit=8) or "both",
            text(body, "reason", required=True),
            actor,
        )
        return await _adjust(office.attendance.add_punch, *args)

    async def void(request: Request) -> Response:
        actor = need(request, "attendance.adjust")
        body = await json_body(request)
        event_id = text(body, "event_id", required=True, limit=64)
        return await _adjust(office.attendance.void, event_id, text(body, "reason", required=True), actor)

    async def unpunch(request: Request) -> Response:
        actor = need(request, "attendance.adjust")
        body = await json_body(request)
        adjustment = request.path_params["adjustment"]
        return await _adjust(
            office.attendance.remove_punch, adjustment, text(body, "reason", required=True), actor
        )

    return [
        Route("/api/attendance/days", days),
        Route("/api/attendance/days.{kind}", download),
        Route("/api/attendance.csv", event_log),
        Route("/api/attendance/groups", groups),
        Route("/api/attendance/punches", punch, methods=["POST"]),
        Route("/api/attendance/void", void, methods=["POST"]),
        Route("/api/attendance/punches/{adjustment}/void", unpunch, methods=["POST"]),
    ]


async def _adjust(fn, *args) -> Response:
    try:
        return JSONResponse(await run_in_threadpool(fn, *args))
    except AttendanceError as exc:
        return JSONResponse({"error": str(exc)}, 409)
