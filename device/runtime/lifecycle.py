"""The service's life under systemd: sd_notify (standard library only) and the stop/reload flags.

The notify protocol is one datagram per message on the AF_UNIX socket named by $NOTIFY_SOCKET:
a filesystem path, or an abstract name written with a leading `@`. With no $NOTIFY_SOCKET (run by
hand, in a container, under another supervisor) every call is a no-op, so the service code can call
these unconditionally.

Watchdog contract: `frame_processed()` is the only place WATCHDOG=1 is sent, and the service loop
calls it only after a frame went through the pipeline. A stuck camera or a stalled loop therefore
stops the pets and systemd (WatchdogSec=) kills and restarts the service.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from types import FrameType

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to $NOTIFY_SOCKET; does nothing when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one message. True if it was handed to the socket."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            # The service keeps running: systemd acts on what it does not hear (start timeout, watchdog).
            if not self._failed:
                log.warning("sd_notify to %s failed: %s", _printable(self.address), exc)
            self._failed = True
            return False
        if self._failed:
            log.info("sd_notify to %s works again", _printable(self.address))
            self._failed = False
        return True


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Linux abstract namespace: the name starts with a NUL byte instead of `@`.
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    # systemd >= 254 may also hand out vsock:... addresses (VMs); a terminal never runs that way.
    log.warning("NOTIFY_SOCKET=%r is not a unix socket; systemd notifications are off", value)
    return None


def _printable(address: str | bytes) -> str:
    return "@" + address[1:].decode("utf-8", "replace") if isinstance(address, bytes) else address


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pets (half of $WATCHDOG_USEC), or None when no watchdog is armed for us."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    # A WATCHDOG_PID naming another process means the watchdog belongs to a parent that exec'd us.
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2_000_000


class Lifecycle:
    """What the service loop reports to systemd, and the signals it is asked to act on.

    Signal handlers only set flags; the loop reads `stop_requested` and `take_reload()` between frames.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = Notifier(environ)
        self._interval = watchdog_interval(environ)
        self._clock = clock
        self._last_pet: float | None = None
        self._stop = False
        self._signalled = False
        self._reload = False

    # ---- signals ---------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT request a graceful stop, SIGHUP a config reload. Call from the main thread."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True
        self._signalled = True

    def request_stop(self) -> None:
        """A graceful stop asked for by the program itself (the demo ends its first pass), as SIGTERM would."""
        self._stop = True

    @property
    def stopped_by_signal(self) -> bool:
        return self._signalled

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def take_reload(self) -> bool:
        """True once per SIGHUP received since the last call."""
        pending, self._reload = self._reload, False
        return pending

    # ---- notifications ---------------------------------------------------------------------------

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pets, or None when systemd armed no watchdog for this process."""
        return self._interval

    def ready(self, status: str = "processing frames") -> None:
        """Start-up (or a reload) is complete: models verified, the source delivers frames."""
        self._notifier.send("READY=1", f"STATUS={_one_line(status)}")
        # systemd arms the watchdog at READY=1; the first pet is due one interval later.
        self._last_pet = self._clock()

    def frame_processed(self) -> None:
        """A frame went through the pipeline. Pets the watchdog at most once per interval, from READY=1 on."""
        if self._interval is None or self._last_pet is None:
            return
        now = self._clock()
        if now - self._last_pet >= self._interval:
            self._notifier.send("WATCHDOG=1")
            self._last_pet = now

    def reloading(self) -> None:
        """A reload starts; call `ready()` when it is done (systemd waits for READY=1)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notifier.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")

    def stopping(self, status: str = "stopping") -> None:
        self._notifier.send("STOPPING=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        self._notifier.send(f"STATUS={_one_line(text)}")


def _one_line(text: str) -> str:
    # A newline would start a new KEY=value field in the message.
    return " ".join(text.split())
