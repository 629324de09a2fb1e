"""The backend's page and its JSON API (Starlette, served by uvicorn on a thread of its own).

GET /                          the page (after /login); GET /static/page.js its script
GET /api/events                recorded events, newest first (?limit=, ?date=YYYY-MM-DD in the site's time zone,
                               ?terminal=); each with the decision, the score against the threshold in force,
                               and, to roles that may see biometric detail, the nearest subject and the margin
GET /api/events/{id}/raw       the exact bytes that crossed the broker (while in the live view)
GET /api/events/{id}/thumbnail the face thumbnail, when one was sent (while in the live view)
GET /api/terminals             terminals: online/offline, health, gallery version and authority
GET /api/health                the backend's own health
The people, consent, corrections and purges API: faceonly_backend/web_people.py; attendance and exports:
web_attendance.py; logins, staff, tokens and the audit log: web_admin.py.

Who may do what is the caller's role (faceonly_backend/accounts.py): a staff session (cookie, with a CSRF
token every state-changing request echoes in X-CSRF-Token), or an integration's API token (Authorization:
Bearer). `[http] auth = "open"` (loopback only, a lab) acts as the admin "lab" for everyone. On loopback
the page answers only to its own host names (a DNS-rebinding page cannot reach it), and state-changing
requests take only application/json (another web site cannot post them).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from device.privacy.containers import JPEG_SOI, PNG_SIGNATURE
from faceonly_backend import web_admin, web_attendance, web_people
from faceonly_backend.accounts import allowed
from faceonly_backend.audit import Actor
from faceonly_backend.config import is_loopback, parse_listen
from faceonly_backend.store import DATABASE_ERRORS
from faceonly_backend.web_common import SESSION_COOKIE, actor_of, day_range, local_time, need

if TYPE_CHECKING:
    from faceonly_backend.service import BackendService

MAX_LIMIT = 1000
# While the database is away, an API token it accepted this recently still reads the health (and nothing
# else): that is when the health matters most, and no token can be revoked without the database anyway.
TOKEN_REMEMBERED_S = 300.0
# Reachable without a login: the login page and what it needs.
PUBLIC = ("/login", "/api/login", "/static/")


def thumbnail_type(data: bytes) -> str:
    """The media type a thumbnail is served as, by its signature: PNG, or JPEG from older terminals."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    return "image/jpeg" if data.startswith(JPEG_SOI) else "application/octet-stream"


def finite_only(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_only(v) for v in value]
    return value


def health_snapshot(service: BackendService) -> dict[str, Any]:
    """The backend's own health: its counts, its source (on NATS: the consumer's lag and redeliveries), and
    what the database holds, which it answers also while the database is away (that is when it matters)."""
    snap = service.health.snapshot(service.consumer.inbox.qsize(), service.consumer.connected.is_set())
    snap["stream"] = service.consumer.stats()
    try:
        snap["stored_quarantine"] = service.store.quarantine()
    except DATABASE_ERRORS as exc:
        snap["stored_quarantine"] = None
        snap["store_unavailable"] = " ".join(str(exc).split())[:200]
    snap["notice"] = service.notice
    point = service.office.gallery.point
    snap["central_threshold"] = point.as_dict() if point is not None else None
    return finite_only(snap)


def build_app(service: BackendService, hosts: list[str] | None = None) -> Starlette:  # noqa: C901 - one small nested handler per route
    """The app; `hosts`: the only Host headers served (on loopback, against DNS rebinding)."""
    store, live, office = service.store, service.live, service.office
    zone = service.cfg.site.zone

    def events_json(request: Request) -> list[dict]:
        need(request, "events.view")
        limit = min(int(request.query_params.get("limit", "100")), MAX_LIMIT)
        since, until = day_range(request, zone)
        records = store.events(limit, since, until, request.query_params.get("terminal") or None)
        detail = allowed(actor_of(request).role, "events.biometric")
        names = office.people.names()
        corrected = {c.event_id for c in office.corrections.recent(1000)}
        out = []
        for rec in records:
            item = finite_only(rec.as_json())
            entry = live.get(rec.event_id)
            item["live"] = entry is not None
            item["thumbnail"] = detail and entry is not None and entry.thumbnail is not None
            item["enrollable"] = (
                entry is not None
                and entry.embedding is not None
                and rec.subject is None
                and rec.event_id not in corrected
            )
            item["corrected"] = rec.event_id in corrected or rec.original_subject is not None
            item["note"] = entry.note if entry is not None else None
            item["name"] = names.get(rec.subject or "")
            item["time_local"] = local_time(rec.created_at, zone)
            if detail:
                item["nearest_name"] = names.get(rec.nearest or "")
            else:
                for key in ("nearest", "nearest_score", "margin", "original_subject"):
                    item.pop(key, None)
            out.append(item)
        return out

    async def page(request: Request) -> Response:
        if actor_of(request, required=False) is None:
            return RedirectResponse("login", 303)
        return HTMLResponse(_static("page.html"))

    async def login_page(request: Request) -> Response:
        return HTMLResponse(_static("login.html"))

    async def script(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("page.js", "login.js", "page.css"):
            return JSONResponse({"error": "not found"}, 404)
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(_static(name), media_type=kind, headers={"Cache-Control": "no-cache"})

    async def events(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(events_json, request))

    async def raw(request: Request) -> Response:
        need(request, "events.biometric")
        entry = live.get(request.path_params["event_id"])
        if entry is None:
            return JSONResponse(
                {"error": "not in the live view any more (raw bytes are kept in memory only)"}, 404
            )
        return Response(entry.raw, media_type="application/json")

    async def thumbnail(request: Request) -> Response:
        need(request, "events.biometric")
        entry = live.get(request.path_params["event_id"])
        if entry is None or entry.thumbnail is None:
            return JSONResponse({"error": "no thumbnail (none sent, or past the live view)"}, 404)
        return Response(
            entry.thumbnail,
            media_type=thumbnail_type(entry.thumbnail),
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def terminals(request: Request) -> Response:
        need(request, "terminals.view")
        rows = await run_in_threadpool(store.terminals)
        # Whatever a row holds (written by an older version, say), the answer is JSON: non-finite -> null.
        return JSONResponse(
            [
                finite_only(
                    {
                        "id": t.id,
                        "state": t.state or "unknown",
                        "status_at": t.status_at,
                        "health": t.health,
                        "health_at": t.health_at,
                        "gallery_version": t.gallery_version,
                        "gallery_authority": t.gallery_authority,
                        "gallery_current": office.gallery.version is None
                        or (
                            t.gallery_version == office.gallery.version
                            and t.gallery_sha256 in (None, office.gallery.sha256)
                        ),
                    }
                )
                for t in rows
            ]
        )

    async def health(request: Request) -> Response:
        actor_of(request)
        return JSONResponse(await run_in_threadpool(health_snapshot, service))

    routes = [
        Route("/", page),
        Route("/login", login_page),
        Route("/static/{name}", script),
        Route("/api/events", events),
        Route("/api/events/{event_id}/raw", raw),
        Route("/api/events/{event_id}/thumbnail", thumbnail),
        Route("/api/terminals", terminals),
        Route("/api/health", health),
        *web_people.routes(service),
        *web_attendance.routes(service),
        *web_admin.routes(service),
    ]
    app = Starlette(routes=routes, exception_handlers={ValueError: _bad_request, HTTPException: _http_error})
    app.add_middleware(_Auth, service=service)
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    return app


def _static(name: str) -> str:
    return resources.files("faceonly_backend").joinpath("page", name).read_text("utf-8")


async def _bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"bad request: {exc}"}, 400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code)


class _Auth:
    """Pure ASGI middleware: who is asking (scope state "actor": a session, a token, the lab, or nobody), and
    a state-changing request made with a session must carry the session's CSRF token."""

    UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

    def __init__(self, app, service: BackendService) -> None:
        self.app, self.service = app, service
        self._tokens: dict[str, tuple[Actor, float]] = {}  # sha256 of a token -> (actor, when it was checked)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            actor, csrf = await run_in_threadpool(self._who, request)
        except DATABASE_ERRORS:
            remembered = self._remembered(request)
            if remembered is None:
                answer = {"error": "the database is unavailable: credentials cannot be checked"}
                await JSONResponse(answer, 503)(scope, receive, send)
                return
            actor, csrf = remembered, None
        state = scope.setdefault("state", {})
        state["actor"], state["csrf"] = actor, csrf
        path = scope["path"]
        public = path == "/" or path.startswith(PUBLIC)
        if actor is None and not public:
            await JSONResponse({"error": "log in first (or give an API token)"}, 401)(scope, receive, send)
            return
        if csrf is not None and scope["method"] in self.UNSAFE and path != "/api/login":
            given = request.headers.get("x-csrf-token", "")
            if not hmac.compare_digest(given.encode(), csrf.encode()):
                await JSONResponse({"error": "missing or wrong CSRF token"}, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _who(self, request: Request):
        if self.service.cfg.http.auth == "open":
            return Actor("lab", "admin"), None
        accounts = self.service.office.accounts
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer "):
            key = hashlib.sha256(bearer.encode()).hexdigest()
            actor = accounts.token(bearer.removeprefix("Bearer ").strip())
            if actor is None:
                self._tokens.pop(key, None)
            else:
                self._tokens[key] = (actor, time.monotonic())
            return actor, None
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            session = accounts.session(session_id)
            if session is not None:
                return session.actor, session.csrf
        return None, None

    def _remembered(self, request: Request) -> Actor | None:
        """The actor of a health read with an API token the database accepted within TOKEN_REMEMBERED_S."""
        bearer = request.headers.get("authorization", "")
        if request.method != "GET" or request.url.path != "/api/health" or not bearer.startswith("Bearer "):
            return None
        actor, checked = self._tokens.get(hashlib.sha256(bearer.encode()).hexdigest(), (None, 0.0))
        return actor if time.monotonic() - checked <= TOKEN_REMEMBERED_S else None


class WebServer:
    def __init__(self, service: BackendService) -> None:
        import uvicorn

        http = service.cfg.http
        host, port = parse_listen(http.listen)
        hosts = sorted({host, "localhost", "127.0.0.1", "::1", "[::1]"}) if is_loopback(host) else None
        app = build_app(service, hosts)
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
