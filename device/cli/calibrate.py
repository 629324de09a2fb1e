"""`faceonly calibrate`: teach the terminal its own camera's live faces (run at installation, service stopped).

Live people walk up and pass the challenge; each pass adds its replay-cue values to the camera's baseline in
the state dir (device.vision.liveness.calibration). Until `vision.liveness.calibration_min_passes` passes are
learned the replay cue can only step a challenge up, never reject; `faceonly calibrate --show` and the
terminal's status say which it is. `--reset` forgets the baseline (a new camera, a new lens, moved lights).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from device.cli.run import add_terminal_flags, base_config
from device.config import ConfigError

EXIT_INCOMPLETE = 1
EXIT_CONFIG = 2


def register(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="learn the camera's live baseline of the replay cues from N live passes (installation)",
    )
    add_terminal_flags(cal)
    cal.add_argument("--passes", type=int, default=10, help="live passes to record (default 10)")
    cal.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    cal.add_argument("--keep", action="store_true", help="add to the baseline instead of starting afresh")
    cal.add_argument("--reset", action="store_true", help="forget the baseline and exit (uncalibrated)")
    cal.add_argument("--show", action="store_true", help="print whether the terminal is calibrated and exit")
    cal.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from device.vision.liveness.calibration import CueCalibration

    try:
        cfg = base_config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.passes < 1:
        print("--passes must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    live = cfg.vision.liveness
    calibration = CueCalibration.in_state_dir(
        Path(cfg.service.state_dir),
        min_passes=live.calibration_min_passes,
        max_passes=live.calibration_max_passes,
    )
    if args.show:
        print(json.dumps(calibration.status()))
        return 0
    if args.reset or not args.keep:
        calibration.reset()
    if args.reset:
        print(json.dumps(calibration.status()))
        return 0
    return _record_passes(cfg, calibration, args.passes, args.timeout)


def _record_passes(cfg, calibration, passes: int, timeout_s: float) -> int:
    from device.infra.modelstore import ModelStore
    from device.runtime import statedir
    from device.vision.liveness.prompts import ConsolePromptSink
    from device.vision.pipeline import build_pipeline
    from device.vision.sources import iter_frames, open_source

    statedir.prepare(cfg.service.state_dir)
    statedir.hold(cfg.service.state_dir)  # the service must not learn into the same file meanwhile
    if cfg.vision.liveness.policy != "challenge":
        print(
            "calibrate needs vision.liveness.policy = challenge (only passed challenges teach)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    pipeline = build_pipeline(cfg, ModelStore(cfg.service.models_dir), calibration=calibration)
    pipeline.learn_calibration = True
    pipeline.set_prompt_sink(_prompt_sink(cfg, ConsolePromptSink(sys.stderr)))
    source = open_source(cfg.vision.source, cfg.vision)
    start, target = calibration.passes, calibration.passes + passes
    deadline = time.monotonic() + timeout_s
    print(
        f"calibrate: {passes} live passes wanted; look at the camera and follow the prompts", file=sys.stderr
    )
    try:
        with iter_frames(source) as frames:
            for frame in frames:
                for obs in pipeline.process(frame):
                    print(
                        f"calibrate: {obs.decision} ({calibration.passes - start}/{passes})", file=sys.stderr
                    )
                if calibration.passes >= target or time.monotonic() > deadline:
                    break
    finally:
        source.close()
    print(json.dumps(calibration.status()))
    return 0 if calibration.passes >= target else EXIT_INCOMPLETE


def _prompt_sink(cfg, console):
    """Prompts to the console, and to the terminal's own screen when it has one (service.prompt_socket)."""
    if cfg.service.prompt_socket is None:
        return console
    from device.runtime.prompts import LocalPromptSink, PromptChannel

    return PromptChannel({"console": console, "local": LocalPromptSink(cfg.service.prompt_socket)})
