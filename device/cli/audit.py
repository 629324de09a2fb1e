"""`faceonly audit`: watch a terminal's whole MQTT namespace and prove what left it.

Subscribes to `<prefix>/v1/dev/<id>/#` (retained messages included), decodes every image found in
any message and judges the privacy rules (device/privacy/audit.py). Works against any broker the
auditor can read: run it while the terminal runs, on a real deployment or in a test. With --names or
--gallery-config it also searches every payload for a display name; with --screen it reads the door
screen's loopback channel on the terminal itself and checks that no image bytes travel on it.

Exit status: 0 every rule passed, 1 a rule failed, 2 bad arguments or no broker connection,
3 inconclusive (no face event was seen).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import queue
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from device.config.privacy import decode_public_key, read_public_key_file
from device.infra.stopsignals import interrupt_on_stop_signals
from device.privacy.audit import AuditPolicy, audit_result, inspect_message, message_line, render_text
from device.privacy.personal import usable_names
from device.privacy.screen_audit import inspect_screen_message
from device.privacy.signing import key_id
from device.transport.client import add_broker_flags, connect_tool, options_from_args
from device.transport.topics import API_VERSION

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
_EXIT = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="prove what a terminal publishes (privacy audit over MQTT)")
    add_broker_flags(p)
    p.add_argument("--id", dest="terminal_id", required=True, help="terminal id whose namespace to watch")
    p.add_argument("--prefix", default="faceonly", help="topic prefix (default: faceonly)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, default=None, help="watch this many seconds (default 60)")
    stop.add_argument("--count", type=int, default=None, help="stop after this many face events")
    p.add_argument(
        "--timeout", type=float, default=600.0, help="with --count: give up after this many seconds"
    )
    p.add_argument("--policy-size", type=int, default=112, help="largest allowed image side in pixels")
    p.add_argument("--require-sealed", action="store_true", help="biometric fields must be sealed")
    p.add_argument(
        "--backend-key",
        default=None,
        help="backend X25519 public key (base64 or file): implies --require-sealed",
    )
    p.add_argument(
        "--backend-private-key",
        default=None,
        help="backend private key (base64 or file): also audit sealed images",
    )
    p.add_argument(
        "--terminal-key", default=None, help="terminal Ed25519 public key (base64 or file): check signatures"
    )
    p.add_argument(
        "--identity-send",
        choices=("unknown_only", "always", "never"),
        default=None,
        help="the terminal's identity.send_embedding: check that matched faces carry no biometric",
    )
    p.add_argument(
        "--names",
        type=Path,
        default=None,
        help="file of display names (one per line): no outbound payload may contain one",
    )
    p.add_argument(
        "--gallery-config",
        type=Path,
        default=None,
        help="the terminal's config file: read the display names of its gallery (needs its state dir)",
    )
    p.add_argument(
        "--screen",
        default=None,
        help="the door screen's URL (http://127.0.0.1:PORT/): no message on it may carry image bytes",
    )
    p.add_argument(
        "--json", dest="json_out", type=Path, default=None, help="write the full audit as JSON here"
    )
    p.add_argument("--quiet", action="store_true", help="print only the verdicts")
    p.set_defaults(func=_audit)


def read_key(value: str) -> bytes:
    """A 32-byte key given as base64 text or as a file holding it."""
    path = Path(value)
    return read_public_key_file(path) if path.is_file() else decode_public_key(value)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retained: bool


class Watcher:
    """A read-only subscriber; paho's callbacks only enqueue."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.filter = f"{args.prefix}/{API_VERSION}/dev/{args.terminal_id}/#"
        self.inbox: queue.Queue[Received] = queue.Queue()
        self.options = options_from_args(args)
        self.client: mqtt.Client | None = None

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        self.inbox.put(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def start(self, timeout: float = 10.0) -> None:
        """Connected and subscribed, or BrokerError with one line naming the broker."""
        self.client = connect_tool(
            self.options,
            f"faceonly-audit-{uuid.uuid4().hex[:8]}",
            subscriptions=[self.filter],
            on_message=self._on_message,
            on_state=lambda line: print(f"audit: {line}", file=sys.stderr, flush=True),
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


class ScreenReader:
    """Reads the door screen's event stream (GET /events) on its own thread, every message kept."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/events"
        self.messages: list[tuple[str, str]] = []
        self._response: Any = None
        self._thread = threading.Thread(target=self._read, name="audit-screen", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Connected, or OSError naming the URL."""
        try:
            self._response = urllib.request.urlopen(self.url, timeout=timeout)
        except OSError as exc:
            raise OSError(f"door screen {self.url}: {exc}") from None
        self._thread.start()

    def _read(self) -> None:
        event, data = "message", list[str]()
        try:
            for raw in self._response:
                line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
                if not line:
                    if data:
                        self.messages.append((event, "\n".join(data)))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
        except (OSError, ValueError):
            pass  # closed by stop() or by the terminal

    def stop(self) -> None:
        if self._response is not None:
            with contextlib.suppress(OSError):
                self._response.close()
        if self._thread.is_alive():
            self._thread.join(5)


def _policy(args: argparse.Namespace) -> AuditPolicy:
    backend = read_key(args.backend_key) if args.backend_key else None
    private = None
    if args.backend_private_key:
        path = Path(args.backend_private_key)
        text = path.read_text(encoding="ascii").strip() if path.is_file() else args.backend_private_key
        private = base64.b64decode(text, validate=True)
    names: list[str] = []
    if args.names is not None:
        lines = args.names.read_text(encoding="utf-8").splitlines()
        names += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if args.gallery_config is not None:
        names += gallery_names(args.gallery_config)
    return AuditPolicy(
        names=usable_names(names),
        max_image_size=args.policy_size,
        require_sealed=args.require_sealed or backend is not None,
        backend_fingerprint=key_id(backend) if backend is not None else None,
        terminal_public_key=read_key(args.terminal_key) if args.terminal_key else None,
        backend_private_key=private,
        identity_send=args.identity_send,
    )


def gallery_names(config_path: Path) -> list[str]:
    """The display names in a terminal's gallery, read through its own config and keys (ValueError: none)."""
    from device.config import ConfigError, load_config
    from device.contracts import ModelRef
    from device.identity.component import build_identity
    from device.infra.modelstore import ModelStore

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    state = Path(cfg.service.state_dir)
    gallery = cfg.identity.gallery_file or state / "gallery.sealed"
    key = cfg.identity.gallery_key_file or state / "gallery.key"
    if cfg.identity.gallery_public_key_file is None or not gallery.is_file() or not key.is_file():
        raise ValueError(f"{config_path}: no gallery to read names from ({gallery}, {key})")
    entry = ModelStore(cfg.service.models_dir).entry("embedder")
    identity = build_identity(cfg, ModelRef("embedder", entry.file, entry.sha256), entry.info)
    if identity is None or identity.gallery is None:
        raise ValueError(f"{config_path}: the gallery did not load: {identity.problem if identity else ''}")
    return [s.display_name for s in identity.gallery.subjects if s.display_name]


def _audit(args: argparse.Namespace) -> int:
    interrupt_on_stop_signals()
    screen: ScreenReader | None = None
    try:
        policy = _policy(args)
        if args.screen is not None:
            screen = ScreenReader(args.screen)
            screen.start()
        watcher = Watcher(args)
        watcher.start()
    except (OSError, ValueError, ConnectionError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        if screen is not None:
            screen.stop()
        return EXIT_USAGE
    limit = args.timeout if args.count is not None else (args.duration if args.duration is not None else 60.0)
    print(f"audit: watching {watcher.filter} for up to {limit:g}s", file=sys.stderr)
    deadline = time.monotonic() + limit
    findings = []
    events = 0
    try:
        while time.monotonic() < deadline and (args.count is None or events < args.count):
            try:
                msg = watcher.inbox.get(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                continue
            finding = inspect_message(msg.topic, msg.payload, msg.retained, policy)
            findings.append(finding)
            events += finding.is_face_event and not finding.inbound
            if not args.quiet:
                print(message_line(finding), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        if screen is not None:
            screen.stop()
    screen_findings = None
    if screen is not None:
        screen_findings = [inspect_screen_message(event, data) for event, data in screen.messages]
        if not args.quiet:
            print(f"audit: {len(screen_findings)} message(s) read from the door screen", file=sys.stderr)
    result = audit_result(findings, policy, screen_findings)
    text = render_text(result)
    print(text)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return _EXIT[result["result"]]
