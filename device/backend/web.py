"""The backend's page and its JSON API (Starlette, served by uvicorn on a thread of its own).

GET /                         the page (live events, attendance, terminals, subjects)
GET /api/events               recorded events, newest first (?limit=, ?date=YYYY-MM-DD, ?terminal=)
GET /api/events/{id}/raw      the exact bytes that crossed the broker (while in the live view)
GET /api/events/{id}/thumbnail the face thumbnail, when one was sent (while in the live view)
GET /api/attendance.csv       the attendance log as CSV (?date=)
GET /api/terminals            terminals: online/offline, health, gallery version
GET /api/subjects             subjects, the central gallery version and its 1:N setting in words
POST /api/subjects/{id}/enroll {terminal, display_name?, timeout_s?}
DELETE /api/subjects/{id}     remove and purge a subject
GET /api/health               the backend's own health

Bound to loopback by default; anywhere else every request needs the token (Authorization: Bearer, or
?token= for a browser, which the page then passes on).
"""

from __future__ import annotations

import csv
import hmac
import io
import math
import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from device.backend.config import is_loopback, parse_listen
from device.backend.subjects import EnrolError
from device.identity.gallery import ID_PATTERN
from device.privacy.containers import JPEG_SOI, PNG_SIGNATURE

if TYPE_CHECKING:
    from device.backend.service import BackendService

MAX_LIMIT = 1000


def thumbnail_type(data: bytes) -> str:
    """The media type a thumbnail is served as, by its signature: PNG, or JPEG from older terminals."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    return "image/jpeg" if data.startswith(JPEG_SOI) else "application/octet-stream"


def _day(request: Request) -> str | None:
    day = request.query_params.get("date") or None
    if day is not None:
        time.strptime(day, "%Y-%m-%d")  # ValueError -> 400
    return day


def _finite_only(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_only(v) for v in value]
    return value


def build_app(service: BackendService, token: str | None, hosts: list[str] | None = None) -> Starlette:  # noqa: C901 - one small nested handler per route
    """The app; `token`: required on every request; `hosts`: the only Host headers served (a page on
    loopback without a token refuses others, so a DNS-rebinding web page cannot reach it)."""
    store, live = service.store, service.live

    def events_json(request: Request) -> list[dict]:
        limit = min(int(request.query_params.get("limit", "100")), MAX_LIMIT)
        records = store.events(limit, _day(request), request.query_params.get("terminal") or None)
        out = []
        for rec in records:
            item = rec.as_json()
            entry = live.get(rec.event_id)
            item["live"] = entry is not None
            item["thumbnail"] = entry is not None and entry.thumbnail is not None
            item["note"] = entry.note if entry is not None else None
            out.append(item)
        return out

    async def page(request: Request) -> Response:
        return HTMLResponse(resources.files("device.backend").joinpath("page.html").read_text("utf-8"))

    async def events(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(events_json, request))

    async def raw(request: Request) -> Response:
        entry = live.get(request.path_params["event_id"])
        if entry is None:
            return JSONResponse(
                {"error": "not in the live view any more (raw bytes are kept in memory only)"}, 404
            )
        return Response(entry.raw, media_type="application/json")

    async def thumbnail(request: Request) -> Response:
        entry = live.get(request.path_params["event_id"])
        if entry is None or entry.thumbnail is None:
            return JSONResponse({"error": "no thumbnail (none sent, or past the live view)"}, 404)
        return Response(
            entry.thumbnail,
            media_type=thumbnail_type(entry.thumbnail),
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def attendance_csv(request: Request) -> Response:
        records = await run_in_threadpool(store.events, MAX_LIMIT * 100, _day(request), None)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["time_utc", "terminal", "subject", "decision", "score", "reasons", "event_id"])
        for r in records:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.created_at))
            codes = " ".join(x["code"] for x in r.reasons)
            writer.writerow(
                [
                    when,
                    r.terminal,
                    r.subject or "",
                    r.decision,
                    r.score if r.score is not None else "",
                    codes,
                    r.event_id,
                ]
            )
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="attendance.csv"'},
        )

    async def terminals(request: Request) -> Response:
        rows = await run_in_threadpool(store.terminals)
        # Whatever a row holds (written by an older version, say), the answer is JSON: non-finite -> null.
        return JSONResponse(
            [
                _finite_only(
                    {
                        "id": t.id,
                        "state": t.state or "unknown",
                        "status_at": t.status_at,
                        "health": t.health,
                        "health_at": t.health_at,
                        "gallery_version": t.gallery_version,
                    }
                )
                for t in rows
            ]
        )

    async def subjects(request: Request) -> Response:
        rows = await run_in_threadpool(store.subjects)
        return JSONResponse(
            {
                "gallery_version": service.subjects.version,
                "threshold_meaning": service.subjects.threshold_meaning,
                "subjects": [{"id": i, "display_name": n, "added_at": a, "source": s} for i, n, a, s in rows],
            }
        )

    async def enrol(request: Request) -> Response:
        subject = request.path_params["subject"]
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # Not a "simple" cross-site request: another web page cannot make the browser send it.
            return JSONResponse({"error": "the body must be application/json"}, 415)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, 400)
        if (
            not ID_PATTERN.match(subject)
            or not isinstance(body, dict)
            or not isinstance(body.get("terminal"), str)
        ):
            return JSONResponse(
                {"error": f"need a subject id matching {ID_PATTERN.pattern} and a terminal"}, 400
            )
        timeout = float(body.get("timeout_s", 30))
        try:
            version = await run_in_threadpool(
                service.subjects.enrol_at, body["terminal"], subject, body.get("display_name"), timeout
            )
        except (EnrolError, OSError, RuntimeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse({"subject": subject, "gallery_version": version})

    async def remove(request: Request) -> Response:
        subject = request.path_params["subject"]
        try:
            version, purged = await run_in_threadpool(service.subjects.remove, subject)
        except (EnrolError, OSError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 409)
        live.forget(set(purged))  # its thumbnails and raw bytes go with the records
        return JSONResponse({"removed": subject, "gallery_version": version, "records_purged": len(purged)})

    async def health(request: Request) -> Response:
        snap = service.health.snapshot(service.consumer.inbox.qsize(), service.consumer.connected.is_set())
        snap["stored_quarantine"] = await run_in_threadpool(store.quarantine)
        snap["notice"] = service.notice
        return JSONResponse(snap)

    routes = [
        Route("/", page),
        Route("/api/events", events),
        Route("/api/events/{event_id}/raw", raw),
        Route("/api/events/{event_id}/thumbnail", thumbnail),
        Route("/api/attendance.csv", attendance_csv),
        Route("/api/terminals", terminals),
        Route("/api/subjects", subjects),
        Route("/api/subjects/{subject}/enroll", enrol, methods=["POST"]),
        Route("/api/subjects/{subject}", remove, methods=["DELETE"]),
        Route("/api/health", health),
    ]
    app = Starlette(routes=routes, exception_handlers={ValueError: _bad_request})
    if token is not None:
        app.add_middleware(_TokenGate, token=token)
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    return app


async def _bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"bad request: {exc}"}, 400)


class _TokenGate:
    """Pure ASGI middleware: every HTTP request needs the token (header or ?token=)."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token):
                await JSONResponse({"error": "a token is required"}, 401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class WebServer:
    def __init__(self, service: BackendService) -> None:
        import uvicorn

        http = service.cfg.http
        host, port = parse_listen(http.listen)
        token = http.token_file.read_text(encoding="utf-8").strip() if http.token_file else None
        if not is_loopback(host) and not token:
            raise ValueError(f"the page on {http.listen} needs a non-empty token file")
        hosts = None if token else sorted({host, "localhost", "127.0.0.1", "::1", "[::1]"})
        app = build_app(service, token, hosts)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="backend-web", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError("the backend page did not start (is the port free?)")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
