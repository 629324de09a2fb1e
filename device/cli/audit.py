"""`faceonly audit`: watch a terminal's whole MQTT namespace and prove what left it.

Subscribes to `<prefix>/v1/dev/<id>/#` (retained messages included), decodes every image found in
any message and judges the privacy rules (device/privacy/audit.py). Works against any broker the
auditor can read: run it while the terminal runs, on a real deployment or in a test.

Exit status: 0 every rule passed, 1 a rule failed, 2 bad arguments or no broker connection,
3 inconclusive (no face event was seen).
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from device.config.privacy import decode_public_key, read_public_key_file
from device.infra.stopsignals import interrupt_on_stop_signals
from device.privacy.audit import AuditPolicy, audit_result, inspect_message, message_line, render_text
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


def _policy(args: argparse.Namespace) -> AuditPolicy:
    backend = read_key(args.backend_key) if args.backend_key else None
    private = None
    if args.backend_private_key:
        path = Path(args.backend_private_key)
        text = path.read_text(encoding="ascii").strip() if path.is_file() else args.backend_private_key
        private = base64.b64decode(text, validate=True)
    return AuditPolicy(
        max_image_size=args.policy_size,
        require_sealed=args.require_sealed or backend is not None,
        backend_fingerprint=key_id(backend) if backend is not None else None,
        terminal_public_key=read_key(args.terminal_key) if args.terminal_key else None,
        backend_private_key=private,
        identity_send=args.identity_send,
    )


def _audit(args: argparse.Namespace) -> int:
    interrupt_on_stop_signals()
    try:
        policy = _policy(args)
        watcher = Watcher(args)
        watcher.start()
    except (OSError, ValueError, ConnectionError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
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
    result = audit_result(findings, policy)
    text = render_text(result)
    print(text)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return _EXIT[result["result"]]
