"""Logging in and out, staff accounts, API tokens and the audit log.

GET  /api/login                 (public) whether any staff account exists yet, the site's name
POST /api/login                 {username, password} -> the session cookie (HttpOnly, SameSite=Strict) and
                                the CSRF token to send as X-CSRF-Token with every state-changing request
POST /api/logout
GET  /api/me                    who is asking, the role, what it may do, the site
GET  /api/staff; POST /api/staff {username, password, role}; PATCH /api/staff/{name} {role?, password?, disabled?}
GET  /api/tokens; POST /api/tokens {name, role} (the token is shown once); DELETE /api/tokens/{name}
GET  /api/audit?limit=&before=  the audit log, newest first
GET  /api/audit/verify          walk the whole chain: ok, or the first entry that does not hold
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faceonly_backend.accounts import PERMISSIONS, AccountError
from faceonly_backend.web_common import SESSION_COOKIE, actor_of, json_body, need, text

if TYPE_CHECKING:
    from faceonly_backend.service import BackendService


def routes(service: BackendService) -> list[Route]:  # noqa: C901, PLR0915 - one small nested handler per route
    office, http, site = service.office, service.cfg.http, service.cfg.site
    accounts, audit = office.accounts, office.audit

    def site_json() -> dict:
        return {"name": site.name, "time_zone": site.time_zone, "profile": site.profile}

    async def login_state(request: Request) -> Response:
        staff = await run_in_threadpool(accounts.staff)
        return JSONResponse({"staff_exist": bool(staff), "auth": http.auth, "site": site_json()})

    async def login(request: Request) -> Response:
        body = await json_body(request)
        username = str(text(body, "username", required=True, limit=64))
        password = str(text(body, "password", required=True, limit=1024))
        try:
            session_id, session = await run_in_threadpool(accounts.login, username, password)
        except AccountError as exc:
            return JSONResponse({"error": str(exc)}, 401)
        reply = JSONResponse(
            {"username": session.actor.name, "role": session.actor.role, "csrf": session.csrf}
        )
        reply.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(http.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=http.secure_cookies,
            path="/",
        )
        return reply

    async def logout(request: Request) -> Response:
        actor_of(request)
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            await run_in_threadpool(accounts.logout, session_id)
        reply = JSONResponse({"logged_out": True})
        reply.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=http.secure_cookies
        )
        return reply

    async def me(request: Request) -> Response:
        actor = actor_of(request)
        return JSONResponse(
            {
                "username": actor.name,
                "role": actor.role,
                "permissions": sorted(PERMISSIONS.get(actor.role, ())),
                "csrf": getattr(request.state, "csrf", None),
                "auth": http.auth,
                "site": site_json(),
            }
        )

    async def staff(request: Request) -> Response:
        need(request, "staff.manage")
        return JSONResponse([s.as_json() for s in await run_in_threadpool(accounts.staff)])

    async def add_staff(request: Request) -> Response:
        actor = need(request, "staff.manage")
        body = await json_body(request)
        username = str(text(body, "username", required=True, limit=64))
        role = str(text(body, "role", required=True, limit=16))

        def add() -> dict:
            made = accounts.add_staff(
                username, str(text(body, "password", required=True, limit=1024)), role, actor
            )
            audit.append(actor, "staff.add", username, role=role)
            return made.as_json()

        return await _accounts(add)

    async def change_staff(request: Request) -> Response:
        actor = need(request, "staff.manage")
        username, body = request.path_params["username"], await json_body(request)

        def change() -> dict:
            if body.get("role") is not None:
                before = accounts.set_role(username, str(body["role"]))
                audit.append(actor, "staff.role", username, role=str(body["role"]), before=before)
            if body.get("password") is not None:
                accounts.set_password(username, str(body["password"]))
                audit.append(actor, "staff.password", username)
            if body.get("disabled") is True:
                accounts.disable(username)
                audit.append(actor, "staff.disable", username)
            found = accounts.get(username)
            if found is None:
                raise AccountError(f"no staff member {username}")
            return found.as_json()

        return await _accounts(change)

    async def tokens(request: Request) -> Response:
        need(request, "tokens.manage")
        return JSONResponse(await run_in_threadpool(accounts.tokens))

    async def add_token(request: Request) -> Response:
        actor = need(request, "tokens.manage")
        body = await json_body(request)
        name = str(text(body, "name", required=True, limit=64))
        role = str(text(body, "role", required=True, limit=16))

        def add() -> dict:
            token = accounts.add_token(name, role, actor)
            audit.append(actor, "token.add", name, role=role)
            return {"name": name, "role": role, "token": token}

        return await _accounts(add)

    async def revoke(request: Request) -> Response:
        actor = need(request, "tokens.manage")
        name = request.path_params["name"]

        def revoke_it() -> dict:
            accounts.revoke_token(name)
            audit.append(actor, "token.revoke", name)
            return {"revoked": name}

        return await _accounts(revoke_it)

    async def log(request: Request) -> Response:
        need(request, "audit.view")
        limit = min(int(request.query_params.get("limit", "100")), 1000)
        before = request.query_params.get("before")
        entries = await run_in_threadpool(audit.entries, limit, int(before) if before else None)
        return JSONResponse([e.as_json() for e in entries])

    async def verify(request: Request) -> Response:
        need(request, "audit.view")
        return JSONResponse((await run_in_threadpool(audit.verify)).as_json())

    return [
        Route("/api/login", login_state),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/staff", staff),
        Route("/api/staff", add_staff, methods=["POST"]),
        Route("/api/staff/{username}", change_staff, methods=["PATCH"]),
        Route("/api/tokens", tokens),
        Route("/api/tokens", add_token, methods=["POST"]),
        Route("/api/tokens/{name}", revoke, methods=["DELETE"]),
        Route("/api/audit", log),
        Route("/api/audit/verify", verify),
    ]


async def _accounts(fn) -> Response:
    try:
        return JSONResponse(await run_in_threadpool(fn))
    except AccountError as exc:
        raise HTTPException(409, str(exc)) from None
