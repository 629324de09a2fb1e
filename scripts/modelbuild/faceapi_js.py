"""The JavaScript reference for the dlib ResNet rebuild: @vladmandic/face-api itself, run in node.

A private npm folder (<cache>/jsref) holds @tensorflow/tfjs 4.22.0 (+ the wasm backend package, which
face-api's node-wasm bundle requires at load time) and the verified face-api tarball installed from the local
file. faceapi_reference.js then computes descriptors with the cpu backend and weights read from disk: no
network once installed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .fetch import FACE_API, sha256_file

HERE = Path(__file__).resolve().parent
# face-api's node-wasm bundle requires both at load time; 4.22.0 is the tfjs it was built against
JS_PINS = {"@tensorflow/tfjs": "4.22.0", "@tensorflow/tfjs-backend-wasm": "4.22.0"}
CHIP = 150


def install(tgz: Path, jsref: Path, log=print) -> Path:
    """<jsref> with node_modules for the reference (npm install on first use); returns jsref."""
    jsref.mkdir(parents=True, exist_ok=True)
    package = {
        "name": "faceonly-jsref",
        "private": True,
        "dependencies": {**JS_PINS, "@vladmandic/face-api": f"file:{tgz.resolve()}"},
    }
    wanted = json.dumps(package, indent=2, sort_keys=True)
    stamp = jsref / ".installed"
    if stamp.is_file() and stamp.read_text() == wanted:
        return jsref
    digest = sha256_file(tgz)
    if digest != FACE_API.sha256:
        raise SystemExit(f"sha256 mismatch for {tgz}: got {digest}, pinned {FACE_API.sha256}")
    log(f"  npm install into {jsref}: {', '.join(f'{k}@{v}' for k, v in JS_PINS.items())} + {tgz.name}")
    (jsref / "package.json").write_text(wanted)
    # --ignore-scripts: nothing in the tree needs an install script, and none may reach the network
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=dev"],
        cwd=jsref,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stamp.write_text(wanted)
    return jsref


def model_dir(jsref: Path) -> Path:
    """The installed face-api's model/ folder (the same files as the verified tarball's)."""
    return jsref / "node_modules" / "@vladmandic" / "face-api" / "model"


def descriptors(jsref: Path, chips_rgb: np.ndarray, weights_dir: Path | None = None, log=print) -> np.ndarray:
    """(N, 128) float32 face-api descriptors of (N, 150, 150, 3) uint8 RGB chips."""
    chips_rgb = np.ascontiguousarray(chips_rgb, dtype=np.uint8)
    if chips_rgb.ndim != 4 or chips_rgb.shape[1:] != (CHIP, CHIP, 3):
        raise ValueError(f"chips must be (N, {CHIP}, {CHIP}, 3) uint8 RGB, got {chips_rgb.shape}")
    weights = weights_dir or model_dir(jsref)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "chips.raw", Path(tmp) / "desc.raw"
        chips_rgb.tofile(src)
        proc = subprocess.run(
            [
                "node",
                str(HERE / "faceapi_reference.js"),
                str(jsref),
                str(weights),
                str(src),
                str(len(chips_rgb)),
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"faceapi_reference.js failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        for line in proc.stdout.splitlines():
            if line.startswith("  ["):
                log(line)
        return np.fromfile(out, dtype="<f4").reshape(len(chips_rgb), 128)
