"""`faceonly models verify|info`: check shipped models against the manifest, describe them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from device.infra.modelstore import ModelError, ModelStore


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
    rows = [("model", "file", "size", "weights", "1-thread", "source", "licence")]
    for name, entry in store.entries.items():
        info = entry.info
        src = info.get("source") or {}
        shipped = (info.get("latency_ms_1thread") or {}).get("shipped")
        rows.append(
            (
                name,
                entry.file,
                f"{entry.size_bytes / 1e6:.2f} MB",
                str((info.get("quantization") or {}).get("kind", "?")).split(" (")[0],
                f"{shipped:.1f} ms" if isinstance(shipped, int | float) else "-",
                f"{src.get('package', '?')}=={src.get('version', '?')} ({src.get('registry', '?')})"
                if src
                else "-",
                str(info.get("licence", "-")).split(" (")[0],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    lfw = ((store.entries["embedder"].info.get("accuracy") or {}).get("lfw_view2_folds_1_5")
           if "embedder" in store.entries else None)  # fmt: skip
    if lfw:
        print(
            f"\nembedder on LFW View 2 folds 1-5: accuracy {lfw['lfw_accuracy']:.2%} (+-{lfw['lfw_accuracy_std']:.2%}), "
            f"TAR {lfw['lfw_tar_at_far_0.001']:.1%} at FAR 1e-3, AUC {lfw['lfw_auc']:.4f}"
        )
    print(
        "\nlatency measured on the build machine (x86); licences in models/LICENSES.md; --json for everything"
    )
    return 0
