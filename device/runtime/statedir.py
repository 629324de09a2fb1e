"""The state directory (outbox, keys, applied config): made once, and used by one service at a time.

Two instances on one state dir would publish the same outbox records, race on its files and sign
with the same key. The guard is an advisory lock (flock) on `<state_dir>/lock`, held for the life of
the process: the kernel drops it when the process dies, however it dies, so a crash never leaves a
stale lock behind, and the file descriptor is close-on-exec, so a `restart` (exec) takes it again.
The file holds the holder's pid, for the refusal message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"


class StateDirError(Exception):
    """The state dir cannot be used at all (for example it is a file): an operator must fix it."""


class StateDirLocked(Exception):
    """Another process holds this state dir."""


def prepare(state_dir: Path) -> None:
    """Create the state dir (0700) if it is missing; StateDirError if something else is in its place."""
    state_dir = Path(state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        raise StateDirError(f"state dir {state_dir} exists and is not a directory")
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError) as exc:
        raise StateDirError(f"state dir {state_dir} cannot be created: {exc.strerror}") from None


def hold(state_dir: Path) -> int:
    """Lock `state_dir` for this process; returns the descriptor to keep open. StateDirLocked if taken."""
    path = Path(state_dir) / LOCK_FILE
    with contextlib.suppress(OSError):  # a read-only or full disk keeps the file from earlier starts
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    # Held read-only: a file open for writing would keep the state filesystem from going read-only
    # (remount), and flock works on any descriptor.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"pid {holder}" if holder else "another process"
        raise StateDirLocked(
            f"another faceonly instance ({who}) is running on state dir {state_dir}; "
            "refusing to start a second one on it"
        ) from None
    with contextlib.suppress(OSError):  # the pid is only for the message; a read-only disk keeps the old one
        path.write_text(f"{os.getpid()}\n")
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
