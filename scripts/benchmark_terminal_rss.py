#!/usr/bin/env python3
"""The terminal's memory, measured on the real process (printed, not a timed test): `faceonly run` on each
replay at its recorded pace (as a camera delivers frames), publishing to a broker, its resident set read
from /proc every 0.1 s until it logs that the source is finished.

Each replay runs twice, in turn: with the terminal's heap (at most two malloc arenas, device/infra/heap.py)
and with glibc's own default (MALLOC_ARENA_MAX = 8 per core). Printed per run: the frame size, the peak
resident set (VmHWM), the median over the second half of the run (steady), its anonymous and file-backed
parts at the end (RssAnon: heap, frames, tensors; RssFile: the mapped libraries, whose count depends on what
the page cache holds), and the run's length; the machine's load first. `faceonly bench` reports the pipeline's own peak on a synthetic 720p scene; this is
the whole terminal (service, outbox, MQTT, door screen) on the real clips.

    python scripts/benchmark_terminal_rss.py [--broker mqtt://127.0.0.1:1883] [--source replay:PATH ...] \
        [--embedder-runtime onnxruntime] \
        [--height 720]

With --height, each replay is first rescaled to that frame height (aspect kept; 720: the terminal's default
camera, 1280x720) in a temporary file, so the frames are the size a terminal's camera would deliver.

Without --broker, a mosquitto from PATH is started on a free loopback port. Without --source, the four
developer clips of ../shared/data/video that `faceonly bench` uses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
CLIPS = (
    "blink/repeating_blink_video_v1.mp4",
    "face_recognition/short_hamilton_clip.mp4",
    "krzysiek354/real_live_headturn.webm",
    "facenet_pytorch/street_walkers.mp4",
)
FINISHED = "source finished"
SAMPLE_S = 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _frame_size(path: str) -> str:
    capture = cv2.VideoCapture(path)
    try:
        return f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    finally:
        capture.release()


def rescaled(path: str, height: int, workdir: Path) -> str:
    """`path` re-encoded at `height` rows (aspect kept, even width), in `workdir`."""
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    out = workdir / f"{Path(path).stem}-{height}p.mp4"
    writer = None
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            width = round(image.shape[1] * height / image.shape[0] / 2) * 2
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
            writer.write(image)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return str(out)


def measure(
    source: str, broker: str, workdir: Path, heap: str, timeout_s: float, runtime: str
) -> dict[str, float]:
    """One terminal run on `source` with the embedder on `runtime`: peak and steady RSS (MB), its length (s)."""
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if heap == "glibc default":
        env["MALLOC_ARENA_MAX"] = str(8 * (os.cpu_count() or 1))
    state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
    log_path = state / "terminal.log"
    command = [str(Path(sys.executable).with_name("faceonly")), "run", "--broker", broker, "--source", source]
    command += ["--state-dir", str(state), "--id", f"rss-{state.name[6:]}"]
    if runtime != "litert":
        config = state / "config.toml"
        config.write_text(f'[vision]\nembedder_runtime = "{runtime}"\n', encoding="utf-8")
        command += ["--config", str(config)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    samples: list[int] = []
    start, peak = time.monotonic(), 0
    try:
        while time.monotonic() - start < timeout_s:
            time.sleep(SAMPLE_S)
            if proc.poll() is not None:
                raise RuntimeError(f"the terminal exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
            rss = _status_kb(proc.pid, "VmRSS")
            if rss is not None:
                samples.append(rss)
            if FINISHED in log_path.read_text(errors="replace"):
                peak = _status_kb(proc.pid, "VmHWM") or max(samples)
                anon, file = _status_kb(proc.pid, "RssAnon") or 0, _status_kb(proc.pid, "RssFile") or 0
                break
        else:
            raise RuntimeError(f"no '{FINISHED}' within {timeout_s:.0f} s")
    finally:
        proc.terminate()
        proc.wait(30)
    elapsed = time.monotonic() - start
    steady = statistics.median(samples[len(samples) // 2 :])
    return {
        "peak_mb": peak / 1024,
        "steady_mb": steady / 1024,
        "anon_mb": anon / 1024,
        "file_mb": file / 1024,
        "seconds": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", default=None, help="mqtt://host:port (default: a mosquitto started here)")
    parser.add_argument("--source", action="append", default=None, help="replay:PATH (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--height", type=int, default=None, help="rescale each replay to this frame height")
    parser.add_argument(
        "--embedder-runtime",
        choices=("litert", "onnxruntime"),
        default="litert",
        help="what runs the embedder ([vision] embedder_runtime)",
    )
    args = parser.parse_args()
    data = Path(os.environ.get("FACEONLY_SHARED_DATA", ROOT.parent / "shared" / "data"))
    sources = args.source or [f"replay:{data / 'video' / clip}" for clip in CLIPS]
    missing = [s for s in sources if not Path(s.removeprefix("replay:")).exists()]
    if missing:
        print(f"benchmark_terminal_rss: no such replay: {', '.join(missing)}", file=sys.stderr)
        return 2
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; the embedder on {args.embedder_runtime}"
    )
    with tempfile.TemporaryDirectory(prefix="terminal-rss-") as tmp:
        workdir = Path(tmp)
        broker_proc = None
        broker = args.broker
        if broker is None:
            mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            port = _free_port()
            broker_proc = subprocess.Popen(
                [mosquitto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            broker = f"mqtt://127.0.0.1:{port}"
            time.sleep(0.5)
        try:
            print(
                f"{'replay':<34} {'frame':>9} {'heap':<18} {'peak MB':>8} {'steady MB':>10} {'anon':>6} "
                f"{'file':>6} {'s':>6}"
            )
            for source in sources:
                path = source.removeprefix("replay:")
                if args.height is not None:
                    path = rescaled(path, args.height, workdir)
                    source = f"replay:{path}"
                for heap in ("terminal (2 arenas)", "glibc default"):
                    m = measure(source, broker, workdir, heap, args.timeout, args.embedder_runtime)
                    print(
                        f"{Path(path).name[:34]:<34} {_frame_size(path):>9} {heap:<18} {m['peak_mb']:>8.1f} "
                        f"{m['steady_mb']:>10.1f} {m['anon_mb']:>6.1f} {m['file_mb']:>6.1f} {m['seconds']:>6.1f}",
                        flush=True,
                    )
        finally:
            if broker_proc is not None:
                broker_proc.terminate()
                broker_proc.wait(10)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
