"""One way to reach a broker, for the service and every tool (ctl, audit, a backend).

`parse_broker_url` is the only broker URL parser: a URL without `mqtt://` or `mqtts://` is refused,
never guessed (urlsplit reads `host:9999` as scheme `host`, and paho then silently connects to
localhost). `new_client` builds a paho client with credentials, TLS and the protocol applied the
same way everywhere. `add_broker_flags` / `options_from_args` give the tools one set of flags, and
`connect_tool` connects a tool's client, resubscribing in on_connect so a broker restart does not
leave it deaf, or raises `BrokerError` with one line naming the broker and the cause.
"""

from __future__ import annotations

import argparse
import queue
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

Protocol = Literal["5", "3.1.1"]
PROTOCOLS: tuple[Protocol, ...] = ("5", "3.1.1")


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used as given (the message says how to write it)."""


class BrokerError(ConnectionError):
    """The broker cannot be reached or refused us; the message is one line naming the broker."""


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(text: str) -> BrokerUrl:
    """`mqtt://host[:port]` (default 1883) or `mqtts://host[:port]` (default 8883)."""
    if "://" not in text:
        raise BrokerUrlError(
            f"broker {text!r} has no scheme: write mqtt://{text} (or mqtts://{text} for TLS)"
        )
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BrokerUrlError(f"broker {text!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"broker {text!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"broker {text!r}: bad port: {exc}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(f"broker {text!r} must be scheme://host[:port] only")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls)


@dataclass(frozen=True)
class ClientOptions:
    broker: BrokerUrl
    protocol: Protocol = "5"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def v5(self) -> bool:
        return self.protocol == "5"


def new_client(
    options: ClientOptions, client_id: str, *, client_class: type[mqtt.Client] = mqtt.Client, **kwargs: Any
) -> mqtt.Client:
    """A paho client (callback API 2) with protocol, credentials and TLS applied; not connected."""
    client = client_class(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if options.v5 else mqtt.MQTTv311,
        **kwargs,
    )
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if options.broker.tls:
        client.tls_set(
            ca_certs=str(options.tls_ca) if options.tls_ca else None,
            certfile=str(options.tls_cert) if options.tls_cert else None,
            keyfile=str(options.tls_key) if options.tls_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client


def subscribe_confirmed(client: mqtt.Client, topic: str, qos: int, timeout_s: float) -> None:
    """Subscribe and wait for the broker's SUBACK (the client's network loop must run). ConnectionError when
    the broker refuses the subscription or does not confirm it in time: replies sent there would never come."""
    granted: queue.Queue[list[Any]] = queue.Queue()
    client.on_subscribe = lambda c, u, mid, codes, props: granted.put(list(codes))
    client.subscribe(topic, qos=qos)
    try:
        refused = [str(code) for code in granted.get(timeout=timeout_s) if code.is_failure]
    except queue.Empty:
        raise ConnectionError(
            f"the reply subscription {topic}: the broker did not confirm it in {timeout_s:g} s"
        ) from None
    if refused:
        raise ConnectionError(f"the reply subscription {topic}: the broker refused it: {', '.join(refused)}")


def connect_first(options: Sequence[ClientOptions], client_id: str, **kwargs: Any) -> mqtt.Client:
    """A client connected (blocking, network loop not started) to the first of `options` that accepts the
    TCP connection, trying a cluster's nodes in turn; BrokerError naming them all when none does."""
    causes = []
    for option in options:
        client = new_client(option, client_id, **kwargs)
        try:
            client.connect(option.broker.host, option.broker.port)
            return client
        except (OSError, ValueError) as exc:
            causes.append(f"{option.broker}: {_cause(exc)}")
    raise BrokerError("cannot connect to any broker: " + "; ".join(causes))


def _broker_arg(text: str) -> BrokerUrl:
    try:
        return parse_broker_url(text)
    except BrokerUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    """--broker, --protocol, credentials and TLS: the same flags on every tool."""
    g = parser.add_argument_group("broker")
    g.add_argument("--broker", type=_broker_arg, required=True, help="mqtt://host:port or mqtts://host:port")
    g.add_argument("--protocol", choices=PROTOCOLS, default="5", help="MQTT protocol version (default 5)")
    g.add_argument("--username", default=None, help="MQTT user name")
    g.add_argument("--password-file", type=Path, default=None, help="file holding the MQTT password")
    g.add_argument("--tls-ca", "--ca", dest="tls_ca", type=Path, default=None, help="CA certificate (mqtts)")
    g.add_argument(
        "--tls-cert", "--cert", dest="tls_cert", type=Path, default=None, help="client certificate"
    )
    g.add_argument(
        "--tls-key", "--key", dest="tls_key", type=Path, default=None, help="client certificate key"
    )


def add_reply_qos_flag(parser: argparse.ArgumentParser) -> None:
    """--reply-qos for a tool that waits for replies on a topic of its own (a NATS cluster's MQTT makes a
    JetStream consumer for every QoS 1 subscription: 0 there)."""
    parser.add_argument(
        "--reply-qos",
        type=int,
        choices=(0, 1),
        default=1,
        help="QoS of the reply subscription (default 1; 0 on a NATS cluster)",
    )


def options_from_args(args: argparse.Namespace) -> ClientOptions:
    """The options the flags give (OSError if the password file cannot be read)."""
    password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n") if args.password_file else None
    return ClientOptions(
        args.broker, args.protocol, args.username, password, args.tls_ca, args.tls_cert, args.tls_key
    )


def _cause(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def connect_tool(
    options: ClientOptions,
    client_id: str,
    *,
    subscriptions: Sequence[str] = (),
    on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
    on_state: Callable[[str], None] | None = None,
    timeout: float = 10.0,
) -> mqtt.Client:
    """A connected client with its network loop running and `subscriptions` (QoS 1) acknowledged.

    Subscriptions are made in on_connect, so they come back after every reconnect (a clean session
    forgets them). `on_state` gets one line per connection change after the first. Raises
    BrokerError (one line, naming the broker) if the broker is unreachable, refuses us or the
    subscription, or does not answer within `timeout`.
    """
    client = new_client(options, client_id)
    first: queue.Queue[str] = queue.Queue()
    seen = {"connected": False}

    def connected(c: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            first.put(f"broker {options.broker} refused the connection: {reason_code}")
            return
        if seen["connected"] and on_state is not None:
            on_state(f"connection to broker {options.broker} restored")
        seen["connected"] = True
        if subscriptions:
            c.subscribe([(topic, 1) for topic in subscriptions])
        else:
            first.put("")

    def subscribed(c: mqtt.Client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        first.put(f"broker {options.broker} refused the subscription: {', '.join(failed)}" if failed else "")

    def disconnected(c: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if seen["connected"] and on_state is not None:
            on_state(f"connection to broker {options.broker} lost ({reason_code}); reconnecting")

    client.on_connect = connected
    client.on_subscribe = subscribed
    client.on_disconnect = disconnected
    if on_message is not None:
        client.on_message = lambda c, userdata, message: on_message(message)
    try:
        client.connect(options.broker.host, options.broker.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot connect to broker {options.broker}: {_cause(exc)}") from None
    client.loop_start()
    try:
        problem = first.get(timeout=timeout)
    except queue.Empty:
        problem = f"no answer from broker {options.broker} within {timeout:g} s (wrong protocol version?)"
    if problem:
        client.disconnect()
        client.loop_stop()
        raise BrokerError(problem)
    return client
