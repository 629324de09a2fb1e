"""The terminal's heap: at most two malloc arenas however many threads allocate (device/infra/heap.py), and
an operator's own MALLOC_ARENA_MAX left alone. Counted by glibc itself (malloc_info), in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys, threading
import numpy as np
from device.infra.heap import cap_heap_arenas
from device.infra.libc import load_libc

if sys.argv[1] == "cap":
    print("capped" if cap_heap_arenas() else "not capped")

def allocate():
    for _ in range(50):
        blocks = [np.ones(16384, np.uint8) for _ in range(20)]
        del blocks

threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = load_libc()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = sys.argv[2]
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
print("arenas", open(path).read().count("<heap nr="))
"""


def _arenas(tmp_path, mode: str, env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(tmp_path / f"{mode}.xml")],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    return " ".join(out[:-2]), int(out[-1])


@pytest.fixture
def glibc() -> None:
    if os.uname().sysname != "Linux" or not os.confstr("CS_GNU_LIBC_VERSION"):
        pytest.skip("malloc arenas are glibc's")


def test_eight_threads_share_two_arenas_where_glibc_would_give_them_their_own(glibc, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    said, capped = _arenas(tmp_path, "cap", env)
    _, default = _arenas(tmp_path, "default", env)
    assert said == "capped"
    assert capped <= 2 < default, (capped, default)


def test_an_operators_malloc_arena_max_is_left_as_it_is(glibc, tmp_path) -> None:
    said, arenas = _arenas(tmp_path, "cap", {**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert said == "capped"
    assert 2 < arenas <= 4
