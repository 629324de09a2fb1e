"""The door screen's page and its live channel, served by the terminal on loopback with the standard library.

GET /              the page (device/screen/static), shown by Chromium in kiosk mode
GET /screen.js     its script; /screen.css its style
GET /messages.json the catalogue of the configured language with the site's settings (no names)
GET /events        Server-Sent Events: `view` (what to show: codes, parameters, the display name) and
                   `guide` (normalised landmark points); the current view first, then every change
POST /keypad       one key pressed on the page's keypad ({"key": "7"}; 0-9, back, ok, cancel, open; in, out
                   at a door that goes both ways): the terminal keeps what was typed, views only say how
                   many PIN digits there are

The keypad is the one way in: a POST must come from the page itself. Besides the Host check it needs
`Origin` naming this listener, `Content-Type: application/json` (which a form on another site cannot send
without a CORS preflight, and preflights are not answered) and the keypad token the page got from
/messages.json (readable only by a page of this origin). The body is at most KEY_BODY bytes and is never
logged: a PIN is typed here one digit at a time.

Why no web framework: one page, one event stream, one or two clients (the kiosk browser), on a Pi whose
terminal install should not grow by a server stack. Each page has its own bounded queue; a page that falls
behind is disconnected and reconnects to the current view, so the screen thread never waits on a browser.
Only Host headers naming the loopback listener are answered (a web page elsewhere cannot read names through
DNS rebinding), and the page may load nothing but itself (Content-Security-Policy).
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from device.screen.state import DIRECTION_KEYS, KEYS
from device.wire.bounded import PayloadError, loads_bounded

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"/": "index.html", "/screen.js": "screen.js", "/screen.css": "screen.css"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
KEY_BODY = 64
MAX_CLIENTS = 8
CLIENT_QUEUE = 256
KEEPALIVE_S = 15.0
RETRY_MS = 1000


class Subscription:
    """One page's queue of encoded events; overflow marks it to be dropped (the page reconnects)."""

    def __init__(self, limit: int) -> None:
        self._items: deque[bytes] = deque()
        self._limit = limit
        self._ready = threading.Condition()
        self.closed = False

    def push(self, item: bytes) -> None:
        with self._ready:
            if len(self._items) >= self._limit:
                self.closed = True  # too slow a reader: drop it rather than hold the screen thread
            else:
                self._items.append(item)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify()

    def take(self, timeout: float) -> list[bytes] | None:
        """Everything queued (possibly []), or None once closed."""
        with self._ready:
            if not self._items and not self.closed:
                self._ready.wait(timeout)
            if self.closed:
                return None
            items = list(self._items)
            self._items.clear()
            return items


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


class Hub:
    """Fan-out to the connected pages; keeps the latest view for a page that connects later."""

    def __init__(self, max_clients: int = MAX_CLIENTS, queue_size: int = CLIENT_QUEUE) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._max, self._size = max_clients, queue_size
        self._current: bytes | None = None
        self.dropped_clients = 0
        self.connections = 0

    def connect(self) -> Subscription | None:
        with self._lock:
            self._subs = [s for s in self._subs if not s.closed]
            if len(self._subs) >= self._max:
                return None
            sub = Subscription(self._size)
            if self._current is not None:
                sub.push(self._current)
            self._subs.append(sub)
            self.connections += 1
            return sub

    def disconnect(self, sub: Subscription) -> None:
        sub.close()
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, event: str, data: dict[str, Any], current: bool = False) -> None:
        item = sse(event, data)
        with self._lock:
            if current:
                self._current = item
            subs = list(self._subs)
        for sub in subs:
            sub.push(item)
            if sub.closed:
                self.dropped_clients += 1
                self.disconnect(sub)

    @property
    def clients(self) -> int:
        with self._lock:
            return sum(not s.closed for s in self._subs)

    def close(self) -> None:
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], hub: Hub, settings: dict[str, Any], key: Callable[[str], bool]
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.hub, self.settings, self.key = hub, settings, key
        port = self.server_address[1]
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "faceonly-screen"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("door screen: " + format, *args)

    def _headers(self, status: HTTPStatus, content_type: str, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self._headers(status, content_type, len(body))
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.headers.get("Host", "") not in self.server.hosts:
            self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain", b"loopback only\n")
            return
        path = self.path.split("?", 1)[0]
        if path in FILES:
            file = STATIC / FILES[path]
            self._send(HTTPStatus.OK, TYPES[file.suffix], file.read_bytes())
        elif path == "/messages.json":
            body = json.dumps(self.server.settings, ensure_ascii=False).encode()
            self._send(HTTPStatus.OK, "application/json", body)
        elif path == "/events":
            self._events()
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def do_POST(self) -> None:
        """POST /keypad: one key, from the page of this origin only; 204 taken, 409 not now, 403 refused."""
        if self.headers.get("Host", "") not in self.server.hosts:
            self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain", b"loopback only\n")
            return
        if self.path != "/keypad":
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
            return
        token = str(self.server.settings.get("keypad_token", ""))
        if (
            self.headers.get("Origin", "") not in self.server.origins
            or self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json"
            or not hmac.compare_digest(self.headers.get("X-Keypad-Token", ""), token)
        ):
            self._send(HTTPStatus.FORBIDDEN, "text/plain", b"not from the door screen\n")
            return
        key = self._key()
        if key is None:
            self._send(HTTPStatus.BAD_REQUEST, "text/plain", b"one key: 0-9, back, ok, cancel or open\n")
        elif self.server.key(key):
            self._headers(HTTPStatus.NO_CONTENT, "text/plain", 0)
        else:
            self._send(HTTPStatus.CONFLICT, "text/plain", b"the keypad is not open to this door now\n")

    def _key(self) -> str | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        if not 0 < length <= KEY_BODY:
            return None
        try:
            data = loads_bounded(self.rfile.read(length), KEY_BODY, max_depth=1)
        except PayloadError:
            return None
        key = data.get("key") if isinstance(data, dict) and len(data) == 1 else None
        return key if isinstance(key, str) and (key in KEYS or key in DIRECTION_KEYS) else None

    def _events(self) -> None:
        hub = self.server.hub
        sub = hub.connect()
        if sub is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"too many screens\n")
            return
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._headers(HTTPStatus.OK, "text/event-stream; charset=utf-8")
            self.wfile.write(f"retry: {RETRY_MS}\n\n".encode())
            while not self.server.stopping.is_set():
                items = sub.take(KEEPALIVE_S)
                if items is None:
                    break
                self.wfile.write(b"".join(items) if items else b": keepalive\n\n")
        except OSError:
            pass  # the page went away; it reconnects on its own
        finally:
            hub.disconnect(sub)


class ScreenServer:
    """The HTTP listener on its own thread; `url` once started."""

    def __init__(
        self, host: str, port: int, hub: Hub, settings: dict[str, Any], key: Callable[[str], bool]
    ) -> None:
        self._server = _Server((host, port), hub, settings, key)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="door-screen-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.hub.close()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
