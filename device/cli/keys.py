"""`faceonly keys generate --out FILE`: a command key pair for the backend (or an operator).

FILE gets the private key (base64 of the raw 32-byte Ed25519 seed, mode 0600) and FILE.pub the
public key (base64 of its raw 32 bytes). The terminal trusts FILE.pub through
`[control] command_public_key_file`; `faceonly ctl --sign-key FILE` signs with FILE.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from device.privacy.signing import key_id
from device.transport.auth import public_path, write_keypair


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="make the command key pair that signs commands to terminals")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser("generate", help="write FILE (private, 0600) and FILE.pub (public)")
    gen.add_argument(
        "--out", type=Path, required=True, help="private key file; the public key goes to FILE.pub"
    )
    gen.add_argument("--force", action="store_true", help="replace existing files")
    gen.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    out: Path = args.out
    existing = [p for p in (out, public_path(out)) if p.exists()]
    if existing and not args.force:
        # Replacing a command key locks its terminals out until they get the new public key.
        print(f"{existing[0]} exists; use --force to replace it", file=sys.stderr)
        return 2
    if not out.parent.is_dir():
        print(f"{out.parent} is not a directory", file=sys.stderr)
        return 2
    public = write_keypair(out)
    print(f"private key: {out} (keep it on the backend only)")
    print(f"public key:  {public_path(out)}  key id {key_id(public)}")
    print(f"             {base64.b64encode(public).decode()}")
    return 0
