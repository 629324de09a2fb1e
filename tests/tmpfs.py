"""A real small filesystem for storage bad days: a tmpfs that can fill up and be remounted read-only.

Mounting needs root. Outside CI a test that needs it skips; in CI (CI=true, where tests run as root)
not being able to mount is a failure, so the bad-day tests cannot silently stop running.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_mount() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("storage bad-day tests need root (mount) and CI runs as root")
    pytest.skip("needs root to mount a tmpfs")


class Tmpfs:
    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size
        self._filler = path / "filler"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path))

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.path))

    def read_write(self) -> None:
        _mount("-o", "remount,rw", str(self.path))

    def fill(self, leave_bytes: int = 0) -> None:
        """Fill the filesystem with a file of someone else's, leaving about `leave_bytes` free."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        with open(self._filler, "ab") as fh, contextlib.suppress(OSError):
            fh.write(b"\0" * max(0, free - leave_bytes))

    def unfill(self) -> None:
        self._filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def unmount(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.read_write()
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


def _mount(*args: str) -> None:
    out = subprocess.run(["mount", *args], capture_output=True, text=True)
    if out.returncode != 0:
        message = f"mount {' '.join(args)} failed: {out.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Tmpfs]:
    require_mount()
    fs = Tmpfs(path, size)
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()
