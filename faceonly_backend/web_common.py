"""What the page's route modules share: who is asking and may they, request bodies, the site's days."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, Literal, overload

from starlette.exceptions import HTTPException
from starlette.requests import Request

from faceonly_backend.accounts import allowed
from faceonly_backend.audit import Actor
from faceonly_backend.timesheet import day_bounds

SESSION_COOKIE = "faceonly_session"


@overload
def actor_of(request: Request, required: Literal[True] = True) -> Actor: ...
@overload
def actor_of(request: Request, required: bool) -> Actor | None: ...
def actor_of(request: Request, required: bool = True) -> Actor | None:
    actor = getattr(request.state, "actor", None)
    if actor is None and required:
        raise HTTPException(401, "log in first (or give an API token)")
    return actor


def need(request: Request, permission: str) -> Actor:
    """The caller, if its role has `permission`; else 403 naming what is missing."""
    actor = actor_of(request)
    if not allowed(actor.role, permission):
        raise HTTPException(403, f"the {actor.role} role may not do this ({permission})")
    return actor


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object a state-changing request carries; only application/json (another web site cannot make
    a browser send that without asking first)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "the body must be application/json")
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


def text(body: dict[str, Any], key: str, required: bool = False, limit: int = 500) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise HTTPException(400, f"{key} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise HTTPException(400, f"{key} must be text of at most {limit} characters")
    return value


def local_time(at: float, zone: zoneinfo.ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def day_range(request: Request, zone: zoneinfo.ZoneInfo) -> tuple[float | None, float | None]:
    """?date=YYYY-MM-DD as [local midnight, next local midnight) in UTC seconds; (None, None) without one."""
    day = request.query_params.get("date") or None
    if day is None:
        return None, None
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        raise HTTPException(400, "date must be YYYY-MM-DD") from None
    return day_bounds(date, date, zone)
