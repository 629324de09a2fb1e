"""`faceonly models verify|info`: check shipped models against the manifest, describe them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from device.modelstore import ModelError, ModelStore


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="verify or describe the shipped models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    verify = models_sub.add_parser("verify", help="check every model against models/manifest.json")
    verify.add_argument("--models-dir", type=Path, default=None)
    verify.set_defaults(func=_verify)
    info = models_sub.add_parser("info", help="print the manifest's description of each model")
    info.add_argument("--models-dir", type=Path, default=None)
    info.add_argument("--json", action="store_true", help="the manifest entries as JSON")
    info.set_defaults(func=_info)


def _verify(args: argparse.Namespace) -> int:
    try:
        store = ModelStore(args.models_dir)
    except ModelError as exc:
        print(f"FAIL  {exc}")
        return 1
    results = store.verify()
    for r in results:
        print(f"OK    {r.name:22s} {r.file}" if r.ok else f"FAIL  {r.name:22s} {r.file}: {r.problem}")
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)}/{len(results)} models OK in {store.root}")
    return 1 if failed else 0


def _info(args: argparse.Namespace) -> int:
    try:
        store = ModelStore(args.models_dir)
    except ModelError as exc:
        print(f"FAIL  {exc}")
        return 1
    if args.json:
        print(json.dumps({n: e.info for n, e in store.entries.items()}, indent=2))
        return 0
    for name, entry in store.entries.items():
        info = entry.info
        src = info.get("source", {})
        quant = info.get("quantization", {})
        print(f"{name}: {entry.file} ({entry.size_bytes / 1e6:.2f} MB, sha256 {entry.sha256[:16]}...)")
        if src:
            print(f"  source: {src.get('package')}=={src.get('version')} {src.get('path', '')}")
        if info.get("licence"):
            print(f"  licence: {info['licence']}")
        if quant:
            print(f"  quantization: {quant.get('kind')}")
        for key in ("agreement", "accuracy", "latency_ms_1thread"):
            if info.get(key):
                print(f"  {key}: {json.dumps(info[key])}")
    return 0
