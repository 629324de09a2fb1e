"""The terminal's own command handlers, bound to the state the service loop owns.

Each handler takes the request's `args` (validated by a small pydantic model, unknown keys refused)
and returns a JSON-ready result, or raises CommandError. They run on the service loop, never in a
paho callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from device.config import ConfigError
from device.contracts import Protector
from device.infra.modelstore import ModelError, ModelStore
from device.runtime.runtime_config import RuntimeConfig
from device.transport.commands import FAILED, INVALID_CONFIG, CommandError, CommandPlane, parse_args
from device.transport.outbox import Outbox


class _NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _ConfigSet(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    config: dict[str, Any] = Field(description="Nested keys to change, as in the TOML file.")
    version: int | None = Field(None, ge=0, description="Caller's version of this config.")


class _Restart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field("requested", max_length=200)


# Every command answered here: what it does and its argument model. `faceonly ctl cmd --help` lists
# them from this table; a test checks it names exactly the registered commands.
COMMANDS: dict[str, tuple[str, type[BaseModel]]] = {
    "status": ("state, software and model versions, health summary", _NoArgs),
    "config.get": ("the running config, its version and what is settable remotely", _NoArgs),
    "config.set": ("change remotely settable keys (signed)", _ConfigSet),
    "models.info": ("the manifest's description of every model", _NoArgs),
    "models.verify": ("check every model file against the manifest", _NoArgs),
    "restart": ("restart the service (signed)", _Restart),
    "outbox.purge": ("erase every event waiting in the outbox (signed)", _NoArgs),
    "privacy.report": ("what this terminal sends and keeps, and who may command it", _NoArgs),
}


def describe_commands() -> str:
    """One line per command with its arguments (name: type, default), for the operator's help."""
    lines = []
    for name, (what, model) in COMMANDS.items():
        fields = [
            f"{key}{'' if f.is_required() else '?'}: {getattr(f.annotation, '__name__', str(f.annotation))}"
            for key, f in model.model_fields.items()
        ]
        args = "{" + ", ".join(fields) + "}" if fields else "no args"
        lines.append(f"  {name:15s} {what}; {args}")
    return "\n".join(lines)


class TerminalState(Protocol):
    """What the built-in commands read and change: one small object (the service) instead of callbacks."""

    runtime: RuntimeConfig
    store: ModelStore
    outbox: Outbox
    protector: Protector

    def status(self) -> dict[str, Any]: ...

    def config_applied(self, result: dict[str, Any]) -> None: ...

    def request_restart(self, reason: str) -> None: ...

    def describe_control(self) -> dict[str, Any]: ...


def register_all(plane: CommandPlane, state: TerminalState) -> None:
    def no_args(fn: Callable[[], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def handler(args: dict[str, Any]) -> dict[str, Any]:
            parse_args(_NoArgs, args)
            return fn()

        return handler

    def config_set(args: dict[str, Any]) -> dict[str, Any]:
        req = parse_args(_ConfigSet, args)
        try:
            result = state.runtime.apply(req.config, req.version)
        except ConfigError as exc:
            raise CommandError(
                INVALID_CONFIG, "config refused; the running config is unchanged", exc.problems
            ) from None
        state.config_applied(result)
        return result

    def models_info() -> dict[str, Any]:
        store = state.store
        return {"models": {name: e.info for name, e in store.entries.items()}, "root": str(store.root)}

    def models_verify() -> dict[str, Any]:
        try:
            results = state.store.verify()
        except ModelError as exc:
            raise CommandError(FAILED, str(exc)) from None
        return {
            "ok": all(r.ok for r in results),
            # rehashed false: the file is the very one (inode, size, times) that hashed good at hashed_at.
            "models": [
                {
                    "name": r.name,
                    "file": r.file,
                    "ok": r.ok,
                    "problem": r.problem,
                    "rehashed": r.rehashed,
                    "hashed_at": None if r.hashed_at is None else round(r.hashed_at, 3),
                }
                for r in results
            ],
        }

    def restart(args: dict[str, Any]) -> dict[str, Any]:
        req = parse_args(_Restart, args)
        state.request_restart(req.reason)
        return {"restarting": True}

    def outbox_purge() -> dict[str, Any]:
        return {"purged": state.outbox.purge()}

    def privacy_report() -> dict[str, Any]:
        # Who may command the terminal belongs in the report: unsigned control undoes every promise in it.
        report, ctl = dict(state.protector.report()), state.describe_control()
        report["control"] = ctl
        if ctl.get("warning"):
            report["text"] = f"WARNING: {ctl['warning']}.\n{report.get('text', '')}"
        return report

    # read_only: answered unsigned, for anyone who may publish on cmd/req (so each must stay cheap).
    plane.register("status", no_args(state.status), read_only=True)
    plane.register("config.get", no_args(state.runtime.report), read_only=True)
    plane.register("config.set", config_set)
    plane.register("models.info", no_args(models_info), read_only=True)
    plane.register("models.verify", no_args(models_verify), read_only=True)
    plane.register("restart", restart)
    plane.register("outbox.purge", no_args(outbox_purge))
    plane.register("privacy.report", no_args(privacy_report), read_only=True)
