"""What `faceonly ctl cmd` prints for a person: a few lines per reply (`--json` prints the reply itself).

A reply is made for programs: `config.set` echoes the whole running config (160 lines) and `status` nests
every counter. A person asked one question: each known command gets a summary of its answer; anything
else is shown as its top-level fields, nested values abbreviated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

IDS_SHOWN = 20


def _alarms(result: dict[str, Any]) -> str:
    active = [
        name for name, a in (result.get("alarms") or {}).items() if isinstance(a, dict) and a.get("active")
    ]
    return f"alarms: {', '.join(active)}" if active else "alarms: none"


def _status(r: dict[str, Any]) -> list[str]:
    ident = r.get("identity") or {}
    gallery = (
        f"gallery v{ident.get('version')}: {ident.get('count')} subjects"
        if ident.get("loaded")
        else "no gallery"
    )
    outbox = r.get("outbox") or {}
    lines = [
        f"{r.get('state')}, software {r.get('software')}, up {r.get('uptime_s')} s, "
        f"{'connected' if r.get('connected') else 'not connected'}",
        f"frames {r.get('frames')}, events {r.get('events') or {}}, outbox depth {outbox.get('depth')}",
        f"{gallery}; {_alarms(r)}",
    ]
    if ident.get("threshold_meaning"):
        lines.append(
            f"threshold {(ident.get('threshold') or {}).get('threshold')}: {ident['threshold_meaning']}"
        )
    for key in ("liveness_warning", "control_warning", "config_problem"):
        if r.get(key):
            lines.append(f"{key.replace('_', ' ')}: {r[key]}")
    return lines


def _config_set(r: dict[str, Any]) -> list[str]:
    restart = r.get("restart_required") or []
    lines = [f"applied (config version {r.get('version')})"]
    lines.append(f"after a restart: {', '.join(restart)}" if restart else "all of it is in effect now")
    return lines


def _config_get(r: dict[str, Any]) -> list[str]:
    return [
        f"config version {r.get('version')}: {len(_flat(r.get('config') or {}))} keys (--json prints them)"
    ]


def _models_verify(r: dict[str, Any]) -> list[str]:
    models = r.get("models") or []
    bad = [f"{m.get('name')}: {m.get('problem')}" for m in models if not m.get("ok")]
    head = f"{len(models) - len(bad)}/{len(models)} models verified against the manifest"
    if any("rehashed" in m for m in models):  # the terminal hashes again only the files that changed
        kept = sum(1 for m in models if m.get("ok") and m.get("rehashed") is False)
        head += f" ({len(models) - kept} hashed now, {kept} unchanged since their last hash)"
    return [head, *bad]


def _gallery_list(r: dict[str, Any]) -> list[str]:
    if not r.get("loaded"):
        return ["no gallery loaded" + (f": {r['problem']}" if r.get("problem") else "")]
    threshold = (r.get("threshold") or {}).get("threshold")
    lines = [
        f"gallery v{r.get('version')}: {r.get('count')} subjects, {r.get('templates')} templates, "
        f"threshold {threshold}"
    ]
    if r.get("threshold_meaning"):
        lines.append(r["threshold_meaning"])
    ids = r.get("ids")
    if ids is not None:
        shown = ", ".join(ids[:IDS_SHOWN])
        more = f" (and {len(ids) - IDS_SHOWN} more; --json for all)" if len(ids) > IDS_SHOWN else ""
        lines.append(f"subjects: {shown}{more}" if ids else "subjects: none")
    return lines


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _generic(r: Any) -> list[str]:
    if not isinstance(r, dict):
        return [str(r)]
    lines = []
    for key, value in r.items():
        if isinstance(value, dict):
            value = f"{{{len(value)} fields}}"
        elif isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} items]"
        lines.append(f"{key}: {value}")
    return lines


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "status": _status,
    "config.set": _config_set,
    "config.get": _config_get,
    "gallery.list": _gallery_list,
    "models.verify": _models_verify,
}


def show_reply(command: str, reply: dict[str, Any]) -> str:
    """The reply in a few lines: `ok command` and its summary, or `error <code>: <message>`."""
    if not reply.get("ok"):
        error = reply.get("error") or {}
        details = error.get("details")
        extra = [f"  {d}" for d in details] if isinstance(details, list) else []
        return "\n".join([f"error {error.get('code')}: {error.get('message')}", *extra])
    result = reply.get("result")
    summary = SUMMARIES.get(command)
    lines = summary(result) if summary is not None and isinstance(result, dict) else _generic(result)
    return "\n".join([f"ok {command}", *(f"  {line}" for line in lines)])
