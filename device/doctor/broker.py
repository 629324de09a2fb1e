"""The doctor's broker checks, in the order a connection meets them: reachable, TLS chain,
credentials, then the ACL (the terminal can use its own namespace; it cannot read another's).

The doctor connects with its own client id (`<terminal id>-doctor`, clean session): using the
terminal's id would throw a running terminal off the broker (session taken over) and take its
queued commands.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from device.config import Config
from device.doctor import Check
from device.transport.client import BrokerError, BrokerUrlError, ClientOptions, connect_tool
from device.transport.envelope import encode, envelope
from device.transport.topics import Topics
from device.wire.bounded import PayloadError, loads_bounded

TIMEOUT_S = 5.0
OTHER_ID = "doctor-acl-probe"  # a terminal id no real terminal uses: reading it must be refused


def broker(cfg: Config) -> list[Check]:
    if cfg.mqtt.broker is None:
        return [
            Check("broker", "warn", "no broker configured: `faceonly run` starts a demo broker", _URL_FIX)
        ]
    try:
        options = cfg.mqtt.client_options()[0]
    except (BrokerUrlError, OSError) as exc:
        return [Check("broker", "fail", str(exc), _URL_FIX)]
    url = options.broker
    try:
        with socket.create_connection((url.host, url.port), timeout=TIMEOUT_S) as sock:
            checks = [Check("broker", "ok", f"{url} reachable")]
            if url.tls:
                checks.append(_tls(sock, options))
    except OSError as exc:
        cause = exc.strerror or str(exc) or type(exc).__name__
        fix = "start the broker, or correct mqtt.broker; check the network and firewall"
        skipped = [Check(n, "skip", "broker unreachable") for n in ("login", "acl")]
        return [Check("broker", "fail", f"cannot reach {url}: {cause}", fix), *skipped]
    if checks[-1].verdict == "fail":
        return [*checks, *(Check(n, "skip", "TLS failed") for n in ("login", "acl"))]
    return [*checks, *_session(cfg, options)]


_URL_FIX = "set mqtt.broker = mqtt://host:port (or mqtts://host:port) in the config"


def _tls(sock: socket.socket, options: ClientOptions) -> Check:
    context = ssl.create_default_context(cafile=str(options.tls_ca) if options.tls_ca else None)
    if options.tls_cert is not None:
        context.load_cert_chain(str(options.tls_cert), str(options.tls_key) if options.tls_key else None)
    try:
        with context.wrap_socket(sock, server_hostname=options.broker.host) as tls:
            cert = tls.getpeercert() or {}
    except (ssl.SSLError, OSError) as exc:
        fix = "set mqtt.tls_ca to the CA that signed the broker's certificate (and the broker's name in it)"
        return Check("tls", "fail", f"{options.broker}: {getattr(exc, 'reason', None) or exc}", fix)
    # getpeercert's subject: a tuple of RDNs, each a tuple of (name, value) pairs.
    subject: dict[str, str] = {}
    for rdn in cert.get("subject", ()):
        subject.update(pair for pair in rdn if isinstance(pair, tuple))
    return Check(
        "tls", "ok", f"chain verified: {subject.get('commonName', '?')}, valid until {cert.get('notAfter')}"
    )


def _session(cfg: Config, options: ClientOptions) -> list[Check]:
    topics = Topics(cfg.mqtt.topic_prefix, cfg.terminal_id)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    try:
        client = connect_tool(
            options,
            f"{cfg.terminal_id}-doctor",
            subscriptions=[topics.doctor],
            on_message=lambda m: received.put((m.topic, bytes(m.payload))),
            timeout=TIMEOUT_S,
        )
    except BrokerError as exc:
        text = str(exc)
        if "refused the subscription" in text:
            login = Check("login", "ok", f"{options.broker} accepted {_who(options)}")
            return [login, Check("acl", "fail", f"{text} ({topics.doctor})", _ACL_FIX)]
        fix = "check mqtt.username and the password (file or credential)"
        if "wrong protocol version" in text:
            fix = 'set mqtt.protocol to what the broker speaks ("5" or "3.1.1")'
        return [Check("login", "fail", text, fix)]
    try:
        checks = [
            Check("login", "ok", f"{options.broker} accepted {_who(options)}"),
            *_acl(client, topics, received),
        ]
        if cfg.homeassistant.enabled:
            checks.append(_home_assistant(client, cfg, options))
        return checks
    finally:
        client.disconnect()
        client.loop_stop()


_ACL_FIX = "grant the terminal `pattern readwrite <prefix>/v1/dev/%u/#` (its own namespace) in the broker ACL"


def _who(options: ClientOptions) -> str:
    return f"user {options.username!r}" if options.username else "an anonymous client"


def _acl(client, topics: Topics, received: queue.Queue[tuple[str, bytes]]) -> list[Check]:
    own = _round_trip(client, topics.doctor, topics, received)
    if own is None:
        text = f"our probe on {topics.doctor} never came back: the ACL drops it"
        return [Check("acl", "fail", text, _ACL_FIX), Check("acl", "skip", "own namespace unusable")]
    # Brokers grant a subscription and filter at delivery (mosquitto does), so a SUBACK proves
    # nothing: what arrives does. A probe written to a namespace no terminal uses, and the retained
    # status of any other terminal, must both stay invisible.
    foreign = Topics(topics.prefix, OTHER_ID).doctor
    statuses = Topics(topics.prefix, "+").status
    subscribed = threading.Event()  # granted or refused: either way the probe decides
    client.on_subscribe = lambda *args: subscribed.set()
    client.subscribe([(foreign, 1), (statuses, 1)])
    subscribed.wait(TIMEOUT_S)
    leaked = _round_trip(client, foreign, topics, received, wait_s=2.0, also=statuses)
    ok = Check("acl", "ok", f"can publish and read its own namespace {topics.base}/#")
    if leaked is not None:
        text = f"the ACL is open: this terminal can read another terminal's topics ({leaked})"
        return [ok, Check("acl", "warn", text, _ACL_FIX + " and nothing more")]
    return [ok, Check("acl", "ok", f"cannot read other terminals' topics ({foreign}, {statuses})")]


def _round_trip(
    client,
    topic: str,
    topics: Topics,
    received: queue.Queue[tuple[str, bytes]],
    wait_s: float = TIMEOUT_S,
    also: str | None = None,
) -> str | None:
    """Publish a probe on `topic`; the topic it came back on (or another terminal's status on `also`)."""
    nonce = uuid.uuid4().hex
    probe = envelope("doctor.probe", topics.terminal_id, {"nonce": nonce}, ttl_s=30)
    client.publish(topic, encode(probe), qos=1)
    own_status = topics.status
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            got, payload = received.get(timeout=left)
        except queue.Empty:
            break
        if also is not None and got != own_status and mqtt.topic_matches_sub(also, got):
            return got
        with contextlib.suppress(PayloadError):
            echo = loads_bounded(payload, len(payload)) if got == topic else None
            if isinstance(echo, dict) and echo.get("nonce") == nonce:
                return got
    return None


def _home_assistant(client, cfg: Config, options: ClientOptions) -> Check:
    """May the terminal write its discovery configs? Only MQTT 5 says (PUBACK Not authorized)."""
    from device.runtime.homeassistant import node_id

    prefix, node = cfg.homeassistant.discovery_prefix, node_id(cfg.terminal_id)
    if not options.v5:
        return Check("hass", "warn", "write access to the discovery prefix cannot be checked on MQTT 3.1.1")
    # An empty, not retained payload on a config topic no entity uses: Home Assistant ignores it.
    topic = f"{prefix}/button/{node}/doctor_probe/config"
    acks: queue.Queue[tuple[int, bool]] = queue.Queue()
    client.on_publish = lambda c, u, mid, rc, p: acks.put((mid, not rc.is_failure))
    mid = client.publish(topic, b"", qos=1).mid
    deadline = time.monotonic() + TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            got, ok = acks.get(timeout=left)
        except queue.Empty:
            break
        if got == mid and ok:
            return Check("hass", "ok", f"may write Home Assistant discovery configs under {prefix}/")
        if got == mid:
            fix = f"grant the terminal `pattern write {prefix}/+/{node}/#` in the broker ACL"
            return Check(
                "hass", "fail", f"the broker refuses Home Assistant discovery configs ({topic})", fix
            )
    return Check("hass", "warn", f"no acknowledgement for a publish on {topic}")
