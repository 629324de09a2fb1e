"""`faceonly gallery`: the signed gallery by hand, for a lab without a backend (the backend builds on the
same format, and keeps the gallery of every terminal it manages: `faceonly backend subjects ...`).

faceonly gallery keygen --out gallery.key            # + gallery.key.pub for the terminals' config
faceonly gallery build --photos DIR --key gallery.key --out v1.fog [--version N] [--report R.json]
faceonly gallery delta --base v1.fog --key gallery.key --out v2.fog [--add-photos DIR] [--remove ID ...]
faceonly gallery push --broker URL --id T --file v1.fog [--sign-key command.key]

`push` asks the terminal first (gallery.list) and refuses a terminal whose gallery a backend keeps: there
is one version counter per gallery, the backend's (the terminal itself refuses such an update too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from device.cli.pushing import add_push_flags, open_push

if TYPE_CHECKING:
    from device.identity.templates import TemplateMode


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gallery",
        help="lab tools without a backend: make the gallery key, build, delta and push signed galleries",
    )
    gs = g.add_subparsers(dest="gallery_command", required=True)
    kg = gs.add_parser("keygen", help="make the backend's gallery signing key (+ .pub for terminals)")
    kg.add_argument("--out", type=Path, required=True)
    kg.set_defaults(func=_keygen)
    b = gs.add_parser("build", help="a signed snapshot from one folder of photos per subject")
    b.add_argument("--photos", type=Path, required=True)
    b.add_argument("--key", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--version", type=int, default=1)
    b.add_argument("--report", type=Path, help="also write the per-photo report as JSON")
    b.add_argument("--models-dir", type=Path, default=None)
    _templates_flag(b)
    b.set_defaults(func=_build)
    d = gs.add_parser("delta", help="a signed delta from a base update file: add photos, remove subjects")
    d.add_argument("--base", type=Path, required=True)
    d.add_argument("--key", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--add-photos", type=Path)
    d.add_argument("--remove", nargs="*", default=[])
    d.add_argument("--report", type=Path)
    d.add_argument("--models-dir", type=Path, default=None)
    _templates_flag(d)
    d.set_defaults(func=_delta)
    p = gs.add_parser("push", help="send a signed update file to a terminal (chunked, resumable)")
    add_push_flags(p, "names and templates")
    p.add_argument(
        "--window",
        type=int,
        default=8,
        help="chunks in flight at once (the terminal queues up to 64 requests)",
    )
    p.set_defaults(func=_push)


def _templates_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--templates",
        choices=("mean", "each"),
        default="mean",
        help="a subject's good photos as one mean template (default; up to 5 photos per mean, more "
        "photos give several means) or each photo its own template (best of k)",
    )


def _keygen(args: argparse.Namespace) -> int:
    from device.identity.operator import keygen

    try:
        pub, public = keygen(args.out)
    except (FileExistsError, OSError) as exc:
        print(f"gallery keygen failed: {exc}", file=sys.stderr)
        return 1
    print(f"gallery key: {args.out} (keep it on the backend)\npublic key:  {pub}\n{public}")
    return 0


def _photo_subjects(photos: Path, models_dir: Path | None, report_path: Path | None, templates: TemplateMode):
    """(subjects, refused count) from a photo folder, printing the report of every refused photo."""
    from device.identity.builder import subjects_from_photos

    subjects, report, model = subjects_from_photos(photos, models_dir, templates)
    refused = [r for r in report if r.status != "ok"]
    for r in refused:
        why = f" ({'; '.join(r.reasons)})" if r.reasons else ""
        print(f"refused: {r.subject}/{r.file}: {r.status}{why}", file=sys.stderr)
    if report_path:
        report_path.write_text(
            json.dumps([r.__dict__ | {"reasons": list(r.reasons)} for r in report], indent=1),
            encoding="utf-8",
        )
    return subjects, refused, model


def _build(args: argparse.Namespace) -> int:
    from device.identity import operator as op
    from device.infra.modelstore import ModelError

    try:
        signer = op.load_gallery_signer(args.key)
        subjects, refused, model = _photo_subjects(args.photos, args.models_dir, args.report, args.templates)
        if not subjects:
            raise ValueError("no subject has a usable photo")
        op.write_update(args.out, op.snapshot(signer, subjects, args.version, model))
    except (ValueError, OSError, ModelError, RuntimeError) as exc:
        print(f"gallery build failed: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: version {args.version}, {len(subjects)} subjects, {len(refused)} photos refused")
    return 0


def _delta(args: argparse.Namespace) -> int:
    from device.identity import operator as op
    from device.infra.modelstore import ModelError

    try:
        signer = op.load_gallery_signer(args.key)
        base = op.read_update(args.base)
        subjects, refused, model = (
            _photo_subjects(args.add_photos, args.models_dir, args.report, args.templates)
            if args.add_photos
            else ([], [], None)
        )
        if model is None:
            from device.contracts import ModelRef

            e = base.manifest["embedder"]
            model = ModelRef(e["name"], e["file"], e["sha256"])
        update = op.delta(signer, base, model, tuple(subjects), tuple(args.remove))
        op.write_update(args.out, update)
    except (ValueError, OSError, ModelError, RuntimeError, KeyError) as exc:
        print(f"gallery delta failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.out}: delta {update.manifest['base_version']} -> {update.manifest['version']}, "
        f"+{len(subjects)} -{len(args.remove)} subjects, {len(refused)} photos refused"
    )
    return 0


def _push(args: argparse.Namespace) -> int:
    from device.identity.push import PushError, push

    try:
        update, terminal_key, requester = open_push(args, "gallery")
    except (OSError, ValueError) as exc:
        print(f"gallery push failed: {exc}", file=sys.stderr)
        return 1
    try:
        held = requester.request("gallery.list", {})
        authority = ((held.get("result") or {}) if held.get("ok") else {}).get("authority")
        if authority == "backend":
            version = (held.get("result") or {}).get("version")
            print(
                f"refused: terminal {args.terminal_id}'s gallery (version {version}) is kept by a backend: change "
                "it there (faceonly backend subjects ...); these tools are for a lab without one",
                file=sys.stderr,
            )
            return 1
        summary = push(
            requester, update, terminal_key, lambda m: print(m, file=sys.stderr), window=max(1, args.window)
        )
    except PushError as exc:
        print(f"gallery push failed: {exc}", file=sys.stderr)
        return 1
    finally:
        requester.close()
    print(json.dumps(summary, indent=2))
    return 0
