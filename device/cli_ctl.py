"""`faceonly ctl`: the operator's side of the command plane.

    faceonly ctl --broker mqtt://host:1883 --id T1 cmd status
    faceonly ctl --broker mqtts://host:8883 --ca ca.crt --cert op.crt --key op.key --id T1 \
        --sign-key command.key cmd config.set --args '{"config": {"service": {"health_interval_s": 5}}}'
    faceonly ctl --broker mqtt://host:1883 --id T1 --sign-key command.key desired --version 3 \
        --config '{"service": {"health_interval_s": 5}}'
    faceonly ctl --broker mqtt://host:1883 --id T1 watch

With --sign-key (a key from `faceonly keys generate`) every request is signed for terminal T1,
valid for --timeout seconds; state-changing commands need it, read-only ones do not.
`cmd` exits 0 when the terminal answered ok, 1 when it answered with an error, 3 on timeout.
"""

from __future__ import annotations

import argparse
import json
import queue
import ssl
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.demo_broker import describe
from device.transport.auth import read_signing_key, sign_command
from device.transport.desired import signed_desired
from device.transport.topics import Topics

EXIT_ERROR_REPLY = 1
EXIT_TIMEOUT = 3


def register(sub: argparse._SubParsersAction) -> None:
    ctl = sub.add_parser("ctl", help="send commands to a terminal, watch its events and health")
    ctl.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    ctl.add_argument("--id", dest="terminal_id", required=True, help="terminal id")
    ctl.add_argument("--prefix", default="faceonly", help="topic prefix")
    ctl.add_argument("--username", default=None)
    ctl.add_argument("--password-file", default=None, help="file holding the password")
    ctl.add_argument("--ca", default=None, help="CA certificate (mqtts)")
    ctl.add_argument("--cert", default=None, help="client certificate (mqtts)")
    ctl.add_argument("--key", default=None, help="client key (mqtts)")
    ctl.add_argument("--sign-key", type=Path, default=None, help="command key file: sign what is sent")
    ctl_sub = ctl.add_subparsers(dest="ctl_command", required=True)
    cmd = ctl_sub.add_parser("cmd", help="send one command and print its reply")
    cmd.add_argument("name", help="status, config.get, config.set, models.verify, ...")
    cmd.add_argument("--args", default="{}", help="JSON object of arguments")
    cmd.add_argument("--timeout", type=float, default=10.0)
    cmd.set_defaults(func=_cmd)
    desired = ctl_sub.add_parser("desired", help="publish a signed, retained config/desired")
    desired.add_argument("--config", required=True, help="JSON object of config keys to set")
    desired.add_argument("--version", type=int, required=True, help="this config's version (>= 0)")
    desired.add_argument("--ttl", type=float, default=300.0, help="seconds the signature stays valid")
    desired.set_defaults(func=_desired)
    watch = ctl_sub.add_parser("watch", help="print the terminal's status, events and health")
    watch.add_argument("--raw", action="store_true", help="print whole payloads (long strings kept)")
    watch.set_defaults(func=_watch)


def connect(args: argparse.Namespace, client_id: str) -> mqtt.Client:
    url = urlsplit(args.broker)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if args.username:
        password = Path(args.password_file).read_text().strip() if args.password_file else None
        client.username_pw_set(args.username, password)
    if url.scheme == "mqtts":
        client.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key, cert_reqs=ssl.CERT_REQUIRED)
    client.connect(url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883))
    return client


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
    key = _signing_key(args)
    topics = Topics(args.prefix, args.terminal_id)
    token = uuid.uuid4().hex
    reply_topic = f"{topics.cmd_res}/ctl-{token[:12]}"
    replies: queue.Queue[bytes] = queue.Queue()
    subscribed = queue.Queue()
    client = connect(args, f"ctl-{token[:12]}")
    client.on_subscribe = lambda *a: subscribed.put(True)
    client.on_message = lambda c, u, msg: replies.put(bytes(msg.payload))
    client.subscribe(reply_topic, qos=1)
    client.loop_start()
    try:
        subscribed.get(timeout=args.timeout)
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
        }
        if key is not None:
            request.update(sign_command(key, args.terminal_id, args.name, cmd_args, ttl_s=args.timeout))
        client.publish(topics.cmd_req(args.name), json.dumps(request), qos=1, properties=props)
        reply = json.loads(replies.get(timeout=args.timeout))
    except queue.Empty:
        print(f"no reply from {args.terminal_id} within {args.timeout}s", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        client.disconnect()
        client.loop_stop()
    print(json.dumps(reply, indent=2))
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
    client = connect(args, f"ctl-desired-{uuid.uuid4().hex[:8]}")
    client.loop_start()
    try:
        info = client.publish(
            Topics(args.prefix, args.terminal_id).config_desired, json.dumps(payload), 1, True
        )
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"config/desired version {args.version} published (retained); see config/reported")
    return 0


def _watch(args: argparse.Namespace) -> int:
    topics = Topics(args.prefix, args.terminal_id)
    client = connect(args, f"ctl-watch-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, msg: print(
        f"{msg.topic}: {msg.payload.decode(errors='replace')}"
        if args.raw
        else describe(msg.topic, msg.payload),
        flush=True,
    )
    client.subscribe(f"{topics.base}/#", qos=1)
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()
    return 0
