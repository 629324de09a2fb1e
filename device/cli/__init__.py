"""`faceonly` command line. Each subcommand lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import sys

from device.infra import logsetup

DESCRIPTION = (
    "faceonly runs face recognition on a camera terminal and sends only a face embedding and, if "
    "wanted, a small face-only thumbnail over MQTT. It also checks and commands running terminals."
)
EPILOG = (
    "Start here: `faceonly run` (the demo replay, with a demo broker), then `faceonly ctl --help`. "
    "Each command has its own --help."
)

# Modules that each add one subcommand (or a group): keep one per line. The backend's and the lab's are named
# here, never imported by the terminal's code (tests/test_import_graph.py).
COMMAND_MODULES = (
    "device.cli.models",
    "device.cli.replay",
    "device.cli.record",
    "faceonly_lab.cli.evaluate",
    "device.cli.calibrate",
    "device.cli.run",
    "device.cli.ctl",
    "device.cli.keys",
    "device.cli.audit",
    "device.cli.gallery",
    "device.cli.access",
    "device.cli.gate",
    "device.cli.doctor",
    "device.cli.homeassistant",
    "faceonly_lab.cli.bench",
    "faceonly_backend.cli.backend",
    "faceonly_lab.cli.fleet_sim",
    "faceonly_backend.cli.fleet",
)


def announce(label: str, url: str) -> None:
    """One "<label>: <url>" line on stderr, written whole: a log line from another thread cannot land
    between the URL and its newline (people and tests read these lines)."""
    sys.stderr.write(f"{label}: {url}\n")
    sys.stderr.flush()


def _version() -> str:
    try:
        return importlib.metadata.version("faceonly")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceonly", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"faceonly {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logsetup.configure(logging.DEBUG if args.verbose else logging.INFO)
    return int(args.func(args) or 0)
