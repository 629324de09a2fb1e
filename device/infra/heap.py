"""The terminal's C heap. glibc gives each new thread a malloc arena of its own (up to 8 per core), and each
arena keeps the frame-sized blocks it has freed (decoded frames, crops, tensors) for reuse by that thread.
The capture, service, screen and inference threads thus hold several frames' worth of memory each that no
one uses: measured on a 1080p replay (scripts/benchmark_terminal_rss.py), steady RSS 216 MB by default,
192 MB with two arenas. Two, not one: the capture thread and the pipeline still allocate without waiting
for each other's lock most of the time."""

from __future__ import annotations

import os

from device.infra.libc import load_libc

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2


def cap_heap_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas from now on; call it before the threads start. An operator's own
    MALLOC_ARENA_MAX is left as it is. Returns whether a cap is in force; never raises (a C library without
    glibc's mallopt has no arenas to cap)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return True
    libc = load_libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas) == 1)
