"""`faceonly replay make-demo [OUT]`: generate the demo replay (the astronaut photo walking up)."""

from __future__ import annotations

import argparse
from pathlib import Path

from device.infra.paths import demo_dir


def register(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="replays for development and the demo")
    replay_sub = replay.add_subparsers(dest="replay_command", required=True)
    demo = replay_sub.add_parser(
        "make-demo", help="write the demo replay (scikit-image's astronaut photo moved and zoomed)"
    )
    demo.add_argument("out", nargs="?", type=Path, default=None, help=f"folder (default {demo_dir()})")
    demo.add_argument("--fps", type=float, default=15.0, help="frame rate of the replay")
    demo.add_argument("--force", action="store_true", help="write it again even when it is already complete")
    demo.set_defaults(func=_make_demo)


def _make_demo(args: argparse.Namespace) -> int:
    from device.vision.demo import demo_is_complete, make_demo

    out = args.out if args.out is not None else demo_dir()
    if not args.force and demo_is_complete(out, fps=args.fps):
        print(f"demo replay at {out} is complete (--force writes it again)")
        return 0
    try:
        out = make_demo(out, fps=args.fps)
    except (FileExistsError, OSError) as exc:
        print(f"make-demo failed: {exc}")
        return 1
    except ImportError:
        print("make-demo needs scikit-image (pip install scikit-image) for the astronaut photo")
        return 1
    print(f"demo replay written to {out} (a photo: the challenge policy rejects it, by design)")
    return 0
