"""The seed scenario end to end: a face above a large area of bare skin, the real service, real mosquitto.

Per run, three independent witnesses watch one terminal process:
- `faceonly audit` (a separate process, as an integrator would run it) judges every published message;
- a raw subscriber keeps every payload byte, searched for any 32-byte run of the frames' pixel bytes;
- a Python audit hook inside the service process records every file it opens for writing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import skimage.data
from nacl.public import PrivateKey

from device.privacy.audit import AuditPolicy, inspect_message
from device.privacy.imagescan import images_in_json
from device.privacy.protector import UNSAFE_TEST_ENV
from device.privacy.seal import SealError, open_sealed
from device.privacy.signing import load_signer
from tests.broker import Broker
from tests.conftest import missing_data

TERMINAL = "seed-01"
CHUNK = 32
N_FRAMES = 24
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".npy", ".raw")

# Runs the service with a Python audit hook that records every path opened for writing (or renamed to).
HOOKED_SERVICE = textwrap.dedent(
    """
    import atexit, json, os, sys
    written = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS
            ):
                written.append(os.fsdecode(path))
        elif event == "os.rename":
            written.append(os.fsdecode(args[1]))
        elif event == "sqlite3.connect":
            written.append(str(args[0]))

    sys.addaudithook(hook)
    atexit.register(lambda: sys.__stdout__.write("AUDITHOOK " + json.dumps(written) + "\\n"))
    from device.cli import main
    sys.exit(main(["run", "--config", sys.argv[1]]))
    """
)


def require_service() -> None:
    try:
        import device.runtime.service  # noqa: F401
        from device.infra.modelstore import ModelStore
        from device.vision.pipeline import build_pipeline  # noqa: F401

        ModelStore()
    except Exception as exc:  # noqa: BLE001 - any failure here means "not ready yet"; the service or its models are not there yet
        missing_data(f"service not runnable here: {exc}")


def seed_frames() -> list[np.ndarray]:
    """The astronaut's head pasted above a 640x480 field of bare skin made from her own skin tones."""
    bgr = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    head = bgr[0:220, 140:340]
    cheeks = bgr[95:135, 195:275].reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(7)
    smooth = cv2.GaussianBlur(rng.standard_normal((480, 640, 3)).astype(np.float32), (0, 0), 8)
    smooth /= smooth.std()
    skin = cheeks.mean(0) + 0.5 * cheeks.std(0) * smooth + rng.normal(0, 2.0, (480, 640, 3))
    base = np.clip(skin, 0, 255).astype(np.uint8)
    frames = []
    for i in range(N_FRAMES):
        frame = base.copy()
        x = 220 + (i % 3)  # a little sway, as a person standing at a terminal
        frame[10:230, x : x + 200] = head
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def seed_replay(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    require_service()
    out = tmp_path_factory.mktemp("seed-replay")
    frames = seed_frames()
    entries = []
    for i, frame in enumerate(frames):
        cv2.imwrite(str(out / f"{i:06d}.png"), frame)
        entries.append({"file": f"{i:06d}.png", "t": round(i / 10, 3)})
    (out / "replay.json").write_text(json.dumps({"format": 1, "frames": entries}))
    return out, frames


@pytest.fixture(scope="module")
def frame_chunks(seed_replay) -> set[bytes]:
    """Every aligned 32-byte run of every frame (BGR and RGB order) that is not near-uniform."""
    chunks = set()
    for frame in seed_replay[1]:
        for data in (frame.tobytes(), frame[:, :, ::-1].tobytes()):
            for i in range(0, len(data) - CHUNK, CHUNK):
                piece = data[i : i + CHUNK]
                if len(set(piece)) >= 8:
                    chunks.add(piece)
    return chunks


def frame_bytes_in(blob: bytes, chunks: set[bytes]) -> int:
    # Any copied run of >= 2*CHUNK-1 frame bytes contains one aligned chunk at some offset.
    return sum(blob[i : i + CHUNK] in chunks for i in range(len(blob) - CHUNK + 1))


def blobs_of(document, backend: PrivateKey | None) -> list[bytes]:
    """Every string in a JSON document, base64-decoded where it decodes, plus opened sealed contents."""
    out = []
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if backend is not None and "ciphertext" in node:
                with contextlib.suppress(SealError):
                    stack.append(open_sealed(backend, node))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            out.append(node.encode())
            with contextlib.suppress(ValueError):
                out.append(base64.b64decode(node, validate=True))
    return out


@dataclass
class Run:
    audit_rc: int
    audit_out: str
    audit: dict
    messages: list[tuple[str, bytes]]
    written: list[str]
    service_log: str
    core_limit: str  # the running service's "Max core file size" line from /proc/<pid>/limits
    state_dir: Path
    workdir: Path


def run_terminal(
    tmp_path: Path,
    broker: Broker,
    replay: Path,
    privacy: dict,
    audit_args: list[str],
    extra_env: dict | None = None,
) -> Run:
    workdir, state = tmp_path / "work", tmp_path / "state"
    for d in (workdir, workdir / "home", workdir / "tmp"):
        d.mkdir(parents=True)
    state.mkdir(exist_ok=True)
    lines = [f'terminal_id = "{TERMINAL}"', "[service]", f'state_dir = "{state}"', "health_interval_s = 1.0"]
    lines += [
        "[mqtt]",
        f'broker = "{broker.url}"',
        "[vision]",
        f'source = "replay:{replay}"',
        'replay_pace = "fast"',
    ]
    lines += ["[vision.liveness]", 'policy = "off"', "[privacy]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in privacy.items()]
    config = workdir / "terminal.toml"
    config.write_text("\n".join(lines) + "\n")

    messages: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    raw.on_message = lambda c, u, m: (
        lock.acquire(),
        messages.append((m.topic, bytes(m.payload))),
        lock.release(),
    )
    raw.connect(broker.host, broker.port)
    raw.subscribe(f"faceonly/v1/dev/{TERMINAL}/#", qos=1)
    raw.loop_start()

    audit_json = workdir / "audit.json"
    audit = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device",
            "audit",
            "--broker",
            broker.url,
            "--id",
            TERMINAL,
            "--count",
            "1",
            "--timeout",
            "240",
            "--json",
            str(audit_json),
            "--quiet",
            *audit_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "watching" in audit.stderr.readline()
    env = dict(
        os.environ, PYTHONDONTWRITEBYTECODE="1", HOME=str(workdir / "home"), TMPDIR=str(workdir / "tmp")
    )
    env.pop(UNSAFE_TEST_ENV, None)
    env.update(extra_env or {})
    # Outside the watched directories: these are the test's files, not the service's.
    out_log, err_log = tmp_path / "service.out", tmp_path / "service.err"
    with out_log.open("w") as out_fh, err_log.open("w") as err_fh:
        service = subprocess.Popen(
            [sys.executable, "-c", HOOKED_SERVICE, str(config)],
            cwd=workdir,
            env=env,
            stdout=out_fh,
            stderr=err_fh,
        )
    try:
        while audit.poll() is None and service.poll() is None:
            time.sleep(0.2)
        if audit.poll() is None:  # the service ended before the audit saw an event: fail fast
            audit.kill()
        audit_out, audit_err = audit.communicate(timeout=300)
        time.sleep(1.0)  # let the raw subscriber see what followed the event
        limits = Path(f"/proc/{service.pid}/limits").read_text() if service.poll() is None else ""
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        if audit.poll() is None:
            audit.kill()
            audit.wait()
        raw.disconnect()
        raw.loop_stop()
    service_out, service_err = out_log.read_text(), err_log.read_text()
    hooked = [line for line in service_out.splitlines() if line.startswith("AUDITHOOK ")]
    assert hooked, f"service did not finish cleanly:\n{service_err[-3000:]}"
    assert audit_json.exists(), f"audit wrote no result:\n{audit_out}\n{audit_err}\n{service_err[-3000:]}"
    return Run(
        audit.returncode,
        audit_out,
        json.loads(audit_json.read_text()),
        list(messages),
        json.loads(hooked[-1].removeprefix("AUDITHOOK ")),
        service_err,
        next((line for line in limits.splitlines() if line.startswith("Max core file size")), ""),
        state,
        workdir,
    )


def allowed_write(path: str, run: Run) -> bool:
    """Only the outbox, the applied-config file, key files (with their atomic-write temp files) and the
    state-dir lock (which holds a pid)."""
    if path == os.devnull:  # a sink, not a file (opened by a library for its child processes)
        return True
    p = Path(path).resolve()
    state = run.state_dir.resolve()
    if not p.is_relative_to(state):
        return False
    rel = p.relative_to(state)
    if rel.parts[0] == "outbox":
        return True
    name = rel.name.lstrip(".")
    return len(rel.parts) == 1 and name.split(".")[0] in {"signing", "template", "config-overrides", "lock"}


def check_no_frame_left(run: Run, chunks: set[bytes], backend: PrivateKey | None = None) -> None:
    assert run.written, "the audit hook saw no write at all (the outbox must have been written)"
    assert [p for p in run.written if not allowed_write(p, run)] == []
    assert not [p for p in run.written if p.lower().endswith(IMAGE_SUFFIXES)]
    for root in (run.state_dir, run.workdir / "home", run.workdir / "tmp"):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not data.startswith((b"\xff\xd8\xff", b"\x89PNG")), path
                assert frame_bytes_in(data, chunks) == 0, path
    # The service's log: no frame bytes, no image in any token.
    log_bytes = run.service_log.encode()
    assert frame_bytes_in(log_bytes, chunks) == 0
    assert not [i for token in run.service_log.split() for i in images_in_json([token.strip("'\",")])]
    for topic, payload in run.messages:
        assert frame_bytes_in(payload, chunks) == 0, topic
        try:
            document = json.loads(payload)
        except ValueError:
            continue
        for blob in blobs_of(document, backend):
            assert frame_bytes_in(blob, chunks) == 0, topic


@pytest.fixture
def broker(tmp_path, seed_replay):
    with Broker(tmp_path / "mosq") as b:
        yield b


def event_payloads(run: Run) -> list[dict]:
    return [json.loads(p) for t, p in run.messages if t.endswith("/event/face")]


def test_seed_scenario_only_the_face_leaves(tmp_path, broker, seed_replay, frame_chunks):
    # The terminal's key, made as on its first start, so the audit can check every event's signature.
    signer, _ = load_signer(tmp_path / "state" / "signing.key")
    key = base64.b64encode(signer.public_key).decode()
    run = run_terminal(tmp_path, broker, seed_replay[0], {"thumbnail": "face"}, ["--terminal-key", key])
    assert run.audit_rc == 0, run.audit_out
    assert "[PASS] signatures" in run.audit_out
    assert run.core_limit.split()[4:6] == ["0", "0"], run.core_limit  # core dumps off in the service
    assert run.audit["result"] == "pass" and "audit result: PASS" in run.audit_out
    events = event_payloads(run)
    assert events and all("thumbnail" in e["biometric"] for e in events)
    policy = AuditPolicy()
    images = [i for _, p in run.messages for i in inspect_message("t", p, False, policy).images]
    assert images, "the policy sends a thumbnail: the audit must have decoded it"
    for image in images:
        assert max(image.width, image.height) <= 112
        assert image.outside_ellipse_nonzero == 0 and image.metadata == ()
    check_no_frame_left(run, frame_chunks)


def test_sealed_and_renewable_nothing_readable_on_the_wire(tmp_path, broker, seed_replay, frame_chunks):
    backend = PrivateKey.generate()
    public = base64.b64encode(bytes(backend.public_key)).decode()
    private = base64.b64encode(bytes(backend)).decode()
    privacy = {"seal": True, "backend_public_key": public, "template_transform": True}
    run = run_terminal(
        tmp_path, broker, seed_replay[0], privacy, ["--backend-key", public, "--backend-private-key", private]
    )
    assert run.audit_rc == 0, run.audit_out
    verdicts = {v["rule"]: v["passed"] for v in run.audit["verdicts"]}
    assert verdicts["biometric_sealed"] is True and verdicts["face_only"] is True
    for _, payload in run.messages:
        document = json.loads(payload)
        assert not images_in_json(document)  # a subscriber without the key sees no image
        # config/reported names the setting identity.send_embedding: a key, not a biometric
        text = json.dumps(document).replace('"embedding_', "").replace('"send_embedding"', "")
        assert "embedding" not in text
    sealed_images = [i for img in run.audit["messages"] for i in img["images"]]
    assert sealed_images and all("+sealed" in i["where"] for i in sealed_images)
    check_no_frame_left(run, frame_chunks, backend)
    _decrypted_embedding_is_the_terminals(run, backend, seed_replay[0])


def _decrypted_embedding_is_the_terminals(run: Run, backend: PrivateKey, replay: Path) -> None:
    """Recompute the embedding in this process from the same replay and models: it must match the sealed one."""
    from device.config import load_config
    from device.infra.modelstore import ModelStore
    from device.privacy.keyfile import load_secret
    from device.privacy.protector import decode_embedding
    from device.privacy.template import TemplateTransform
    from device.vision.pipeline import build_pipeline
    from device.vision.sources import open_source

    cfg = load_config(run.workdir / "terminal.toml")
    pipeline = build_pipeline(cfg, ModelStore())
    source = open_source(cfg.vision.source, cfg.vision)
    observations = []
    for frame in source.frames():
        try:
            observations += pipeline.process(frame)
        finally:
            source.release(frame)
    observations += pipeline.flush()
    source.close()
    # Without a gallery the backend decides, so what leaves is the flip average (the chip and its mirror).
    local = [o.with_flip().embedding for o in observations if o.embedding is not None]
    transform = TemplateTransform(load_secret(run.state_dir / "template.key", 32))
    opened = [open_sealed(backend, e) for e in event_payloads(run)]
    sent = [decode_embedding(content["embedding"]) for content in opened]
    assert local and sent and all(content["probe"] == "flip" for content in opened)
    assert np.allclose(sent[0], transform.apply(local[0]), atol=1e-6)


def test_audit_fails_an_oversized_test_thumbnail_and_says_why(tmp_path, broker, seed_replay):
    privacy = {"unsafe_test_thumbnail_size": 400}
    run = run_terminal(tmp_path, broker, seed_replay[0], privacy, [], {UNSAFE_TEST_ENV: "1"})
    assert run.audit_rc == 1
    assert "[FAIL] image_size: larger than 112px" in run.audit_out and "biometric.thumbnail" in run.audit_out
    assert run.audit["result"] == "fail"
