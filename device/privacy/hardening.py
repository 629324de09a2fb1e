"""Process hardening for the service: a crash must not write the frame buffers to disk as a core dump."""

from __future__ import annotations

import ctypes
import resource

from device.infra.libc import load_libc

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def disable_core_dumps() -> dict[str, bool]:
    """RLIMIT_CORE to 0 and, on Linux, PR_SET_DUMPABLE 0 (also covers core pipes like systemd-coredump).

    Returns what took effect, for the service's startup log; never raises.
    """
    done = {"rlimit_core_zero": False, "not_dumpable": False}
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        done["rlimit_core_zero"] = True
    except (ValueError, OSError):
        pass
    libc = load_libc()
    if libc is not None and hasattr(libc, "prctl"):
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
            done["not_dumpable"] = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    return done
