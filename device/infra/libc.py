"""The C library, for the few process settings Python does not expose (prctl, mallopt)."""

from __future__ import annotations

import ctypes
import ctypes.util


def load_libc() -> ctypes.CDLL | None:
    """The process's C library, or None where there is none to load."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
