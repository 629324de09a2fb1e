"""`faceonly` command line. Each subcommand lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that each add one subcommand (or a group): keep one per line.
COMMAND_MODULES = (
    "device.cli_models",
    "device.cli_replay",
    "device.cli_record",
    "device.cli_evaluate",
    "device.cli_run",
    "device.cli_ctl",
    "device.cli_keys",
    "device.cli_audit",
    "device.cli_gallery",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceonly", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)
