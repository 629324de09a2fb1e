"""What `faceonly access push` and `faceonly gallery push` share: their flags, and what they open from them
(the signed update file, the terminal's public key, and a requester on the terminal's command topics)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from device.transport.client import add_broker_flags, add_reply_qos_flag, new_client, options_from_args

if TYPE_CHECKING:
    from device.identity.operator import UpdateFile
    from device.identity.push import Requester


def add_push_flags(parser: argparse.ArgumentParser, sealed: str) -> None:
    """`sealed`: what sealing the update to the terminal's key keeps off the broker, for --terminal-key's help."""
    add_broker_flags(parser)
    add_reply_qos_flag(parser)
    parser.add_argument("--id", dest="terminal_id", required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument(
        "--terminal-key",
        required=True,
        help="the terminal's public key (base64, or its file; `faceonly doctor` on the terminal prints it): "
        f"the update is sealed to it, so {sealed} never cross the broker readable",
    )
    parser.add_argument("--prefix", default="faceonly")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each reply")
    parser.add_argument(
        "--sign-key",
        type=Path,
        default=None,
        help="command key file (`faceonly keys generate`): sign requests",
    )


def open_push(args: argparse.Namespace, tool: str) -> tuple[UpdateFile, bytes, Requester]:
    """The update, the terminal's key and a connected requester; OSError or ValueError says what failed.
    `tool` names the MQTT client (`access`, `gallery`)."""
    from device.cli.audit import read_key
    from device.identity.operator import read_update
    from device.identity.push import Requester
    from device.transport.auth import read_signing_key
    from device.transport.topics import Topics

    update = read_update(args.file)
    terminal_key = read_key(args.terminal_key)
    key = read_signing_key(args.sign_key) if args.sign_key is not None else None
    options = options_from_args(args)
    client = new_client(options, f"{tool}-push-{args.terminal_id}"[:60])
    client.connect(options.broker.host, options.broker.port)
    requester = Requester(client, Topics(args.prefix, args.terminal_id), args.timeout, key, args.reply_qos)
    return update, terminal_key, requester
