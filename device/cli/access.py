"""`faceonly access`: the operator's tools for door modes (the backend builds on them).

faceonly access keygen --out credential.key       # the site's credential key (PINs, badges), 0600
faceonly access pass-keygen --out pass.key        # a key that signs QR codes (+ pass.key.pub for the policy)
faceonly access build --policy doors.toml --key gallery.key --credential-key credential.key --version N --out P.foa
faceonly access push --broker URL --id T --terminal-key KEY --sign-key command.key --file P.foa
faceonly access pass --key pass.key --subject visitor-17 --doors main --valid-from T --valid-until T [--uses 1] --png pass.png
faceonly access hash --credential-key credential.key --number 4242 --pin 1234 | --badge 00123456
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from device.cli.pushing import add_push_flags, open_push


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("access", help="door modes: keys, the signed door policy, visitor passes")
    s = a.add_subparsers(dest="access_command", required=True)
    k = s.add_parser("keygen", help="the site's credential key (PINs and badges are stored keyed with it)")
    k.add_argument("--out", type=Path, required=True)
    k.set_defaults(func=_keygen)
    pk = s.add_parser("pass-keygen", help="a key that signs QR codes (visitor passes, member codes)")
    pk.add_argument("--out", type=Path, required=True)
    pk.set_defaults(func=_pass_keygen)
    b = s.add_parser("build", help="a signed door policy from its source (clear PINs and badges get hashed)")
    b.add_argument("--policy", type=Path, required=True, help="the source: TOML or JSON")
    b.add_argument("--key", type=Path, required=True, help="the key that signs policies (the gallery key)")
    b.add_argument("--credential-key", type=Path, default=None)
    b.add_argument("--version", type=int, required=True, help="higher than the one the terminals hold")
    b.add_argument("--out", type=Path, required=True)
    b.set_defaults(func=_build)
    p = s.add_parser("push", help="send a signed door policy to a terminal (chunked, resumable)")
    add_push_flags(p, "people's ids, keypad numbers and credential hashes")
    p.set_defaults(func=_push)
    q = s.add_parser("pass", help="a signed QR code: a visitor pass, or a member's code (--member)")
    q.add_argument("--key", type=Path, required=True, help="a pass key (access pass-keygen)")
    q.add_argument("--subject", required=True)
    q.add_argument("--member", action="store_true", help="a member's code (its id goes in the person's qr)")
    q.add_argument("--id", default=None, help="token id (default: a new random one)")
    q.add_argument("--doors", default="", help="visitor pass: comma-separated door ids")
    q.add_argument("--uses", type=int, default=1, help="visitor pass: how many openings")
    q.add_argument("--valid-from", default=None, help="ISO time with zone, or unix seconds (default: now)")
    q.add_argument("--valid-until", required=True, help="ISO time with zone, or unix seconds")
    q.add_argument("--png", type=Path, default=None, help="also write the QR code as a PNG")
    q.set_defaults(func=_pass)
    h = s.add_parser("hash", help="the stored form of one PIN or badge (to keep no clear one in a source)")
    h.add_argument("--credential-key", type=Path, required=True)
    h.add_argument("--number", default=None)
    h.add_argument("--pin", default=None)
    h.add_argument("--badge", default=None)
    h.set_defaults(func=_hash)


def _keygen(args: argparse.Namespace) -> int:
    from device.access.credentials import keygen

    try:
        keygen(args.out)
    except (FileExistsError, OSError) as exc:
        print(f"access keygen: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: credential key (0600). Copy it to each terminal ([access] credential_key_file).")
    return 0


def _pass_keygen(args: argparse.Namespace) -> int:
    from device.identity.operator import keygen

    try:
        pub, public = keygen(args.out)
    except (FileExistsError, OSError) as exc:
        print(f"access pass-keygen: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: pass key (0600); {pub}: put it in the policy's pass_keys: {public}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from device.access.build import build, read_source
    from device.access.credentials import load_key
    from device.identity.operator import load_gallery_signer, write_update

    try:
        key = load_key(args.credential_key) if args.credential_key is not None else None
        update = build(read_source(args.policy), key, load_gallery_signer(args.key), args.version)
        write_update(args.out, update)
    except (OSError, ValueError) as exc:
        print(f"access build: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: door policy v{args.version}, {len(update.body)} bytes (no clear PIN or badge in it)")
    return 0


def _push(args: argparse.Namespace) -> int:
    from device.access.push import push
    from device.identity.push import PushError

    try:
        update, terminal_key, requester = open_push(args, "access")
    except (OSError, ValueError) as exc:
        print(f"access push failed: {exc}", file=sys.stderr)
        return 1
    try:
        summary = push(requester, update, terminal_key, lambda m: print(m, file=sys.stderr))
    except PushError as exc:
        print(f"access push failed: {exc}", file=sys.stderr)
        return 1
    finally:
        requester.close()
    print(json.dumps(summary, indent=2))
    return 0


def _when(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError(f"{text!r}: give a time zone (e.g. 2026-05-04T18:00+02:00)") from None
        return int(moment.timestamp())


def _pass(args: argparse.Namespace) -> int:
    from device.access.passes import issue, new_id
    from device.identity.operator import load_gallery_signer

    try:
        signer = load_gallery_signer(args.key)
        token = {
            "k": "member" if args.member else "visitor",
            "id": args.id or new_id(),
            "sub": args.subject,
            "nbf": _when(args.valid_from) if args.valid_from else int(time.time()),
            "exp": _when(args.valid_until),
        }
        if not args.member:
            token.update({"doors": [d for d in args.doors.split(",") if d], "uses": args.uses})
        text = issue(signer.key, token)
        if args.png is not None:
            write_qr_png(text, args.png)
    except (OSError, ValueError) as exc:
        print(f"access pass: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"id": token["id"], "qr": text}))
    return 0


def write_qr_png(text: str, path: Path, module_px: int = 8) -> None:
    """The QR code of `text` as a PNG (OpenCV's encoder; a quiet zone of four modules)."""
    import cv2

    code = cv2.QRCodeEncoder.create().encode(text)
    image = cv2.resize(code, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def _hash(args: argparse.Namespace) -> int:
    from device.access import credentials as cr

    try:
        key = cr.load_key(args.credential_key)
        if args.pin is not None:
            if args.number is None:
                raise ValueError("a PIN is hashed with its keypad number: give --number")
            print(json.dumps({"number": args.number, "pin": cr.hash_pin(key, args.number, args.pin)}))
        elif args.badge is not None:
            print(json.dumps({"badge": cr.badge_hash(key, args.badge)}))
        else:
            raise ValueError("give --pin (with --number) or --badge")
    except (OSError, ValueError) as exc:
        print(f"access hash: {exc}", file=sys.stderr)
        return 1
    return 0
