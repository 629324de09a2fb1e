r"""`faceonly gate listen`: the reference gate listener, run next to a door relay on another box.

    faceonly gate listen --broker mqtts://broker:8883 --ca ca.crt --cert gate.crt --key gate.key \
        --id gate-01 --terminal-key TERMINAL_PUBLIC_KEY --door main --pin 17

It pulses the relay on BCM pin --pin for each decision of terminal --id that is signed by
--terminal-key (base64, or a file holding it: privacy.report's sends.signing.public_key), is for
--door, was decided at most --max-age-s ago by this box's clock, and was not seen before. Stops on
SIGTERM or SIGINT (exit 0); 2: bad arguments, an unreadable key or no usable GPIO. A broker that is
down or restarts is waited for. gpiozero picks the pin library (lgpio on a Raspberry Pi);
GPIOZERO_PIN_FACTORY=mock runs it without GPIO hardware.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import uuid

from device.cli.audit import read_key
from device.infra.stopsignals import interrupt_on_stop_signals
from device.transport.client import add_broker_flags, options_from_args
from device.transport.topics import Topics

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    gate = sub.add_parser("gate", help="the gate away from the terminal: a relay driven by signed decisions")
    gate_sub = gate.add_subparsers(dest="gate_command", required=True)
    listen = gate_sub.add_parser(
        "listen",
        help="pulse a relay for each fresh, signed gate decision of one terminal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_broker_flags(listen)
    listen.add_argument("--id", dest="terminal_id", required=True, help="terminal id")
    listen.add_argument("--prefix", default="faceonly", help="topic prefix")
    listen.add_argument(
        "--terminal-key", required=True, help="the terminal's Ed25519 public key (base64 or a file)"
    )
    listen.add_argument("--door", default="main", help="this door (the terminal's [gate] door)")
    listen.add_argument("--pin", type=int, default=17, help="BCM pin of the relay (default 17)")
    listen.add_argument("--active-low", action="store_true", help="the relay is energised by a low level")
    listen.add_argument("--pulse-s", type=_bounded(0.05, 10.0), default=0.5, help="relay pulse (s)")
    listen.add_argument(
        "--max-age-s",
        type=_bounded(0.1, 10.0),
        default=2.0,
        help="refuse a decision made longer ago than this by this box's clock (keep both clocks on NTP)",
    )
    listen.add_argument(
        "--max-skew-s", type=_bounded(0.0, 10.0), default=1.0, help="refuse one dated further in the future"
    )
    listen.add_argument(
        "--client-id", default=None, help="MQTT client id (default: faceonly-gate-DOOR-random)"
    )
    listen.set_defaults(func=_listen)


def _bounded(low: float, high: float):
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _listen(args: argparse.Namespace) -> int:
    from device.gate.check import DecisionCheck
    from device.gate.listener import GateListener
    from device.gate.relay import Relay
    from device.wire.gate import DOOR, TERMINAL_ID

    for flag, value, pattern in (("--id", args.terminal_id, TERMINAL_ID), ("--door", args.door, DOOR)):
        if not re.match(pattern, value):
            print(f"gate listen: {flag} {value!r} must match {pattern}", file=sys.stderr)
            return 2
    try:
        key = read_key(args.terminal_key)
        options = options_from_args(args)
    except (OSError, ValueError) as exc:
        print(f"gate listen: {exc}", file=sys.stderr)
        return 2
    try:
        relay = Relay(args.pin, not args.active_low, args.pulse_s)
    except Exception as exc:  # noqa: BLE001 - gpiozero raises its own kinds for a missing pin library
        print(f"gate listen: no usable GPIO pin {args.pin}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    check = DecisionCheck(
        args.terminal_id, args.door, key, max_age_s=args.max_age_s, max_skew_s=args.max_skew_s
    )
    client_id = args.client_id or f"faceonly-gate-{args.door}-{uuid.uuid4().hex[:8]}"
    listener = GateListener(options, Topics(args.prefix, args.terminal_id).gate, check, relay, client_id)
    interrupt_on_stop_signals()
    listener.start()
    try:
        listener.serve(lambda: False)
    except KeyboardInterrupt:
        pass  # SIGINT or SIGTERM: a clean stop
    finally:
        listener.close()
        log.info("stopped: %s", listener.stats())
    return 0
