"""The doctor's checks of the terminal itself: camera/source, models, clock, disk, systemd unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from device.config import Config
from device.doctor import Check

FIRST_FRAME_S = 10.0  # a camera that gives nothing for this long is not working
UNIT = "faceonly.service"


def camera(cfg: Config, seconds: float = 3.0, max_frames: int = 60) -> Check:
    """Open the configured source the way the service does, count frames for a few seconds, close it."""
    from device.contracts import SourceError
    from device.runtime.capture import Capture
    from device.vision.sources import open_source

    spec = cfg.vision.source
    try:
        source = open_source(spec, cfg.vision)
    except (SourceError, OSError, ValueError) as exc:
        return Check("camera", "fail", f"{spec}: cannot open: {exc}", _camera_fix(spec))
    capture = Capture(source)
    capture.start()
    frames, first_at, started = 0, None, time.monotonic()
    try:
        while frames < max_frames:
            waited = time.monotonic() - started
            if first_at is None and waited > FIRST_FRAME_S:
                break
            if first_at is not None and time.monotonic() - first_at > seconds:
                break
            frame = capture.get(0.2)
            if frame is not None:
                source.release(frame)  # only counted: no pixel is kept, shown or written
                frames += 1
                first_at = first_at or time.monotonic()
            elif capture.ended:
                break
    finally:
        capture.stop()
    if capture.error:
        return Check("camera", "fail", f"{spec}: {capture.error}", _camera_fix(spec))
    if frames == 0:
        return Check("camera", "fail", f"{spec}: no frame within {FIRST_FRAME_S:g} s", _camera_fix(spec))
    span = time.monotonic() - (first_at or started)
    fps = (frames - 1) / span if frames > 1 and span > 0 else 0.0
    return Check("camera", "ok", f"{spec}: opens, {frames} frames in {span:.1f} s ({fps:.1f} fps)")


def _camera_fix(spec: str) -> str:
    if spec.startswith("replay:"):
        return "check the replay path (faceonly replay make-demo writes the demo one)"
    if spec.startswith("v4l2:"):
        return "check the cable and that /dev/video* exists and is not used by another process"
    return "check the ribbon cable and `rpicam-hello --list-cameras`; stop other camera users"


def models(cfg: Config) -> Check:
    from device.infra.modelstore import ModelError, ModelStore

    try:
        store = ModelStore(cfg.service.models_dir)
    except ModelError as exc:
        return Check(
            "models", "fail", str(exc), "set service.models_dir (run --models-dir) to the built models"
        )
    results = store.verify()
    failed = [r for r in results if not r.ok]
    if failed:
        problems = "; ".join(f"{r.name}: {r.problem}" for r in failed)
        return Check("models", "fail", problems, "reinstall the models (scripts/install.sh copies them)")
    runtime = cfg.vision.embedder_runtime
    if runtime == "onnxruntime":
        from device.vision.embed import onnx_link_problem

        problem = onnx_link_problem(store)
        try:
            import onnxruntime  # noqa: F401 - only whether it is there
        except ImportError:
            problem = problem or "vision.embedder_runtime is onnxruntime, which is not installed"
        if problem is not None:
            return Check(
                "models",
                "fail",
                problem,
                "pip install 'faceonly[onnx]', or set vision.embedder_runtime = litert",
            )
    return Check(
        "models",
        "ok",
        f"{len(results)}/{len(results)} verified against the manifest in {store.root}; the embedder runs on "
        f"{runtime}",
    )


def keys(cfg: Config) -> Check:
    """Every file the config names (as `run --validate-config` checks them) and the key id the backend pins
    (`faceonly backend terminals add --confirm KEY_ID`)."""
    import base64

    from device.config.files import file_problems
    from device.privacy.keyfile import KeyFileError, load_secret
    from device.privacy.signing import SEED_BYTES, Signer

    problems = file_problems(cfg)
    if problems:
        return Check("keys", "fail", "; ".join(problems), "fix the named setting or file")
    path = cfg.privacy.signing_key_file or Path(cfg.service.state_dir) / "signing.key"
    if not path.exists():
        return Check("keys", "ok", f"{path} is created on first start; its key id is printed then")
    try:
        from nacl.signing import SigningKey

        signer = Signer(SigningKey(load_secret(path, SEED_BYTES)))
    except (OSError, KeyFileError) as exc:
        return Check(
            "keys", "fail", f"privacy.signing_key_file {path}: {exc}", "restore the key from a backup"
        )
    public = base64.b64encode(signer.public_key).decode()
    return Check("keys", "ok", f"signing key id {signer.key_id} (public key {public}) in {path}")


def clock() -> Check:
    """NTP status as systemd-timesyncd/chrony report it through timedatectl (attendance times depend on it)."""
    if shutil.which("timedatectl") is None:
        return Check(
            "clock", "warn", "clock sync cannot be checked: timedatectl is not installed", _CLOCK_FIX
        )
    try:
        out = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("clock", "warn", f"clock sync cannot be checked: timedatectl: {exc}", _CLOCK_FIX)
    answer = out.stdout.strip()
    if out.returncode != 0 or answer not in ("yes", "no"):
        why = " ".join((out.stderr or out.stdout).split()) or f"exit {out.returncode}"
        return Check("clock", "warn", f"clock sync cannot be checked here: timedatectl: {why}", _CLOCK_FIX)
    if answer == "no":
        return Check("clock", "fail", "the system clock is not NTP-synchronised", _CLOCK_FIX)
    return Check("clock", "ok", "NTP-synchronised (timedatectl)")


_CLOCK_FIX = "enable time sync: `timedatectl set-ntp true` (systemd-timesyncd) or install chrony"


def disk(cfg: Config) -> Check:
    """Room for the outbox on the state filesystem: its byte bound plus the reserve it leaves free."""
    state = Path(cfg.service.state_dir)
    probe = next((p for p in [state, *state.absolute().parents] if p.exists()), Path("/"))
    try:
        st = os.statvfs(probe)
    except OSError as exc:
        return Check("disk", "fail", f"{state}: {exc.strerror or exc}", "check the state filesystem")
    free = st.f_bavail * st.f_frsize
    need, reserve = cfg.outbox.max_bytes + cfg.outbox.reserve_bytes, cfg.outbox.reserve_bytes
    where = f"{state}: {free / 1e6:.0f} MB free (outbox up to {cfg.outbox.max_bytes / 1e6:.0f} MB + {reserve / 1e6:.0f} MB reserve)"
    if not os.access(probe, os.W_OK) or bool(st.f_flag & os.ST_RDONLY):
        return Check("disk", "fail", f"{where}; {probe} is not writable", "make the state dir writable")
    if free < reserve:
        return Check(
            "disk", "fail", where, "free space on the state filesystem or lower outbox.reserve_bytes"
        )
    if free < need:
        return Check("disk", "warn", where, "free space, or lower outbox.max_bytes to what the disk can hold")
    return Check("disk", "ok", where + ("" if state.exists() else "; the state dir is created on first run"))


def unit() -> Check:
    if shutil.which("systemctl") is None:
        return Check("unit", "warn", f"{UNIT}: not installed (no systemctl here)", _UNIT_FIX)
    try:
        out = subprocess.run(
            ["systemctl", "show", UNIT, "--property=LoadState,ActiveState,SubState"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("unit", "warn", f"{UNIT}: state unknown: {exc}", _UNIT_FIX)
    props = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0 or props.get("LoadState") in (None, "not-found"):
        why = " ".join(out.stderr.split()) or "unknown to systemd"
        return Check("unit", "warn", f"{UNIT}: not installed ({why})", _UNIT_FIX)
    state = f"{props.get('ActiveState')} ({props.get('SubState')})"
    if props.get("ActiveState") == "active":
        return Check("unit", "ok", f"{UNIT}: {state}")
    if props.get("ActiveState") == "failed":
        return Check(
            "unit",
            "fail",
            f"{UNIT}: {state}",
            f"see `journalctl -u {UNIT} -e`, then `systemctl restart {UNIT}`",
        )
    return Check("unit", "warn", f"{UNIT}: {state}", f"`systemctl enable --now {UNIT}`")


_UNIT_FIX = "on a terminal: sudo scripts/install.sh (installs and enables the unit)"
