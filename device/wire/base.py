"""What every wire model shares: unknown fields refused, strict finite numbers, and one way to turn a
validation error into the `field: problem` lines the terminal replies with."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# A JSON number (never a bool or a numeric string), finite: NaN and inf do not survive canonical JSON.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NONCE_PATTERN = r"^[A-Za-z0-9_=+/-]{16,128}$"
Nonce = Annotated[str, StringConstraints(pattern=NONCE_PATTERN)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """One `dotted.field: what is wrong` line per error; never the offending value itself."""
    out = []
    for e in exc.errors(include_input=False, include_url=False):
        where = prefix + ".".join(str(p) for p in e["loc"]) if e["loc"] else prefix.rstrip(".")
        what = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {what}" if where else what)
    return out


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> tuple[Any, list[str]]:
    """(the model, []) or (None, problems)."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems(exc, prefix)
