"""Common base for every config section: unknown keys are errors, values are validated on assignment.

Each field also says whether it may be set remotely (`remote(...)` metadata; default: no) and whether
it applies live or after a restart (default: restart).
"""

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def remote(*, live: bool, ge: float | None = None, le: float | None = None) -> JsonDict:
    """Field metadata (json_schema_extra) of a key that `config.set` / `config/desired` may change.

    Every other key is settable only in the terminal's own file. `live`: applied without a restart.
    `ge`/`le`: tighter bounds for a remote value than the file allows.
    """
    meta: JsonDict = {"remote": True, "live": live}
    if ge is not None:
        meta["remote_ge"] = ge
    if le is not None:
        meta["remote_le"] = le
    return meta


# Not settable remotely, but applied without a restart when the file changes (SIGHUP).
LIVE_FROM_FILE: JsonDict = {"remote": False, "live": True}
