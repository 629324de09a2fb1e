"""`faceonly doctor`: check a terminal's set-up in one go; one line per check (ok / warn / fail / skip)
with a fix for every failure. Exit status: 0 nothing failed, 1 a check failed, 2 invalid config."""

from __future__ import annotations

import argparse
import sys

from device.cli.run import add_terminal_flags
from device.config import ConfigError
from device.doctor import Check

EXIT_FAILED = 1
EXIT_CONFIG = 2


def register(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="check camera, models, key files, broker, clock, disk and the systemd unit"
    )
    add_terminal_flags(doctor)
    doctor.add_argument("--seconds", type=float, default=3.0, help="how long frames are counted (default 3)")
    doctor.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from device.cli.run import base_config
    from device.doctor import broker, local

    try:
        cfg = base_config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    checks: list[Check] = []

    def report(*found: Check) -> None:
        for check in found:
            print(check.line(), flush=True)  # as each check finishes: the slow ones come first
            checks.append(check)

    unit = local.unit()
    if unit.verdict == "ok" and not cfg.vision.source.startswith("replay:"):
        # A camera opens for one process only: the running service has it, and its health says how it does.
        detail = (
            f"{cfg.vision.source}: held by the running {local.UNIT}; see alarms.camera_stall in its status"
        )
        report(Check("camera", "skip", detail))
    else:
        report(local.camera(cfg, seconds=args.seconds))
    report(local.models(cfg), local.keys(cfg))
    report(*broker.broker(cfg))
    report(local.clock(), local.disk(cfg), unit)
    failed = [c.name for c in checks if c.verdict == "fail"]
    warned = [c.name for c in checks if c.verdict == "warn"]
    print(f"{len(failed)} failed, {len(warned)} warnings: " + ("not ready" if failed else "ready"))
    return EXIT_FAILED if failed else 0
