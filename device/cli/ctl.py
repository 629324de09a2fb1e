"""`faceonly ctl`: the operator's side of the command plane.

    faceonly ctl --broker mqtt://host:1883 --id T1 cmd status
    faceonly ctl --broker mqtts://host:8883 --ca ca.crt --cert op.crt --key op.key --id T1 \
        --sign-key command.key cmd config.set --args '{"config": {"service": {"health_interval_s": 5}}}'
    faceonly ctl --broker mqtt://host:1883 --id T1 --sign-key command.key desired --version 3 \
        --config '{"service": {"health_interval_s": 5}}'
    faceonly ctl --broker mqtt://host:1883 --id T1 watch

With --sign-key (a key from `faceonly keys generate`) every request is signed for terminal T1,
valid for --timeout seconds; state-changing commands need it, read-only ones do not.
`cmd` exits 0 when the terminal answered ok, 1 when it answered with an error, 2 on bad arguments
(a broker URL without mqtt:// or mqtts:// among them), 3 on timeout or when the broker cannot be
reached (one line naming the broker and the cause). `watch` resubscribes after a broker restart.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.cli.ctl_show import show_reply
from device.infra.stopsignals import interrupt_on_stop_signals
from device.runtime.control import describe_commands
from device.runtime.demo_broker import describe
from device.transport.auth import read_signing_key, sign_command
from device.transport.client import add_broker_flags, connect_tool, options_from_args
from device.transport.commands import RESERVED, RESERVED_PREFIXES
from device.transport.desired import signed_desired
from device.transport.topics import Topics
from device.wire.bounded import PayloadError, loads_bounded

EXIT_ERROR_REPLY = 1
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a command reply (gallery.list of a large gallery included)
EXIT_TIMEOUT = 3
EXIT_BROKER = 3  # the broker cannot be reached or refuses us


def register(sub: argparse._SubParsersAction) -> None:
    ctl = sub.add_parser("ctl", help="send commands to a terminal, watch its events and health")
    add_broker_flags(ctl)
    ctl.add_argument("--id", dest="terminal_id", required=True, help="terminal id")
    ctl.add_argument("--prefix", default="faceonly", help="topic prefix")
    ctl.add_argument("--sign-key", type=Path, default=None, help="command key file: sign what is sent")
    ctl_sub = ctl.add_subparsers(dest="ctl_command", required=True)
    cmd = ctl_sub.add_parser(
        "cmd",
        help="send one command and print its reply",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"commands (? = optional argument; signed = needs --sign-key):\n{describe_commands()}\n"
        f"  {', '.join(RESERVED)}, {', '.join(p + '*' for p in RESERVED_PREFIXES)}: identity commands "
        "(gallery.list, gallery.sync/add/remove, enroll, subject.purge; signed but gallery.list), answered "
        "when [identity] gallery_public_key_file is set (else not_available)",
    )
    cmd.add_argument("name", help="the command (list below)")
    cmd.add_argument("--args", default="{}", help="JSON object of arguments")
    cmd.add_argument("--timeout", type=float, default=10.0)
    cmd.add_argument("--json", action="store_true", help="print the whole reply as JSON (default: a summary)")
    cmd.set_defaults(func=_cmd)
    desired = ctl_sub.add_parser("desired", help="publish a signed, retained config/desired")
    desired.add_argument("--config", required=True, help="JSON object of config keys to set")
    desired.add_argument("--version", type=int, required=True, help="this config's version (>= 0)")
    desired.add_argument("--ttl", type=float, default=300.0, help="seconds the signature stays valid")
    desired.set_defaults(func=_desired)
    watch = ctl_sub.add_parser("watch", help="print the terminal's status, events and health")
    watch.add_argument("--raw", action="store_true", help="print whole payloads (long strings kept)")
    watch.set_defaults(func=_watch)


def _connect(args: argparse.Namespace, client_id: str, **kwargs) -> mqtt.Client:
    """A connected client; SystemExit(EXIT_BROKER) with one line when the broker cannot be used."""
    try:
        return connect_tool(options_from_args(args), client_id, **kwargs)
    except OSError as exc:  # BrokerError, or an unreadable password file
        print(f"ctl: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BROKER) from None


def _json_object(text: str, flag: str) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError as exc:
        print(f"{flag} is not JSON: {exc}", file=sys.stderr)
        return None
    if not isinstance(value, dict):
        print(f"{flag} must be a JSON object", file=sys.stderr)
        return None
    return value


def _reply(raw: bytes) -> dict:
    """A reply as the terminal sent it; one that is not a JSON object is shown as an error reply."""
    try:
        reply = loads_bounded(raw, MAX_REPLY_BYTES)
    except PayloadError as exc:
        return {"ok": False, "error": {"code": exc.code, "message": f"the reply is not readable: {exc}"}}
    if not isinstance(reply, dict):
        return {"ok": False, "error": {"code": "malformed", "message": "the reply is not a JSON object"}}
    return reply


def _signing_key(args: argparse.Namespace) -> SigningKey | None:
    """The --sign-key key (SystemExit 2 with the reason when it cannot be read)."""
    if args.sign_key is None:
        return None
    try:
        return read_signing_key(args.sign_key)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def _cmd(args: argparse.Namespace) -> int:
    cmd_args = _json_object(args.args, "--args")
    if cmd_args is None:
        return 2
    if args.name == "gallery.list" and not cmd_args and not args.json:
        cmd_args = {"ids": True}  # a person asking what is enrolled wants the ids
    key = _signing_key(args)
    topics = Topics(args.prefix, args.terminal_id)
    token = uuid.uuid4().hex
    reply_topic = f"{topics.cmd_res}/ctl-{token[:12]}"
    replies: queue.Queue[bytes] = queue.Queue()
    client = _connect(
        args,
        f"ctl-{token[:12]}",
        subscriptions=[reply_topic],
        on_message=lambda msg: replies.put(bytes(msg.payload)),
        timeout=args.timeout,
    )
    try:
        props = None
        if args.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = token.encode()
            props.MessageExpiryInterval = max(1, int(args.timeout))
        request = {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "type": "command.request",
            "sent_at": time.time(),
            "expires_at": time.time() + args.timeout,
            "args": cmd_args,
            # MQTT 3.1.1 has no properties: the reply address travels in the payload too.
            "reply_to": reply_topic,
            "correlation_id": token,
        }
        if key is not None:
            request.update(sign_command(key, args.terminal_id, args.name, cmd_args, ttl_s=args.timeout))
        client.publish(topics.cmd_req(args.name), json.dumps(request), qos=1, properties=props)
        reply = _reply(replies.get(timeout=args.timeout))
    except queue.Empty:
        print(
            f"no reply from {args.terminal_id} within {args.timeout:g} s on broker {args.broker} "
            "(is it running, with this --id and --prefix?)",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    finally:
        client.disconnect()
        client.loop_stop()
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(show_reply(args.name, reply), file=sys.stdout if reply.get("ok") else sys.stderr)
    return 0 if reply.get("ok") else EXIT_ERROR_REPLY


def _desired(args: argparse.Namespace) -> int:
    config = _json_object(args.config, "--config")
    if config is None:
        return 2
    key = _signing_key(args)
    if key is None:
        print("desired needs --sign-key: the terminal refuses an unsigned config/desired", file=sys.stderr)
        return 2
    payload = signed_desired(key, args.terminal_id, config, args.version, ttl_s=args.ttl)
    client = _connect(args, f"ctl-desired-{uuid.uuid4().hex[:8]}")
    try:
        info = client.publish(
            Topics(args.prefix, args.terminal_id).config_desired, json.dumps(payload), 1, True
        )
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    if not info.is_published():
        print(f"ctl: broker {args.broker} did not acknowledge config/desired within 10 s", file=sys.stderr)
        return EXIT_BROKER
    print(f"config/desired version {args.version} published (retained); see config/reported")
    return 0


def _watch(args: argparse.Namespace) -> int:
    interrupt_on_stop_signals()
    topics = Topics(args.prefix, args.terminal_id)

    def show(msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace")
        print(f"{msg.topic}: {text}" if args.raw else describe(msg.topic, msg.payload), flush=True)

    client = _connect(
        args,
        f"ctl-watch-{uuid.uuid4().hex[:8]}",
        subscriptions=[f"{topics.base}/#"],
        on_message=show,
        on_state=lambda line: print(f"ctl: {line}", file=sys.stderr, flush=True),
    )
    print(f"ctl: watching {topics.base}/# on {args.broker} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return 0
