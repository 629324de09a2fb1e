#!/usr/bin/env python3
"""Command floods against a terminal on the demo replay, through a real mosquitto (printed, not a timed test).

    python scripts/benchmark_control.py verify [--count 1000] [--rounds 3] [--seconds 8] [--pace recorded|fast] [--no-cache]
    python scripts/benchmark_control.py burst [--requests 100000] [--queue 1000]

verify: the frame loop's timing (health.loop: frame = waiting for the loop + its turn) over a quiet
stretch, then while a client floods `models.verify` (unsigned, closed loop: `--window` outstanding,
busy ones sent again, until `--count` were answered ok); `--rounds` times, so that a machine whose load
drifts weighs on both alike. `--no-cache` makes the
terminal hash every model file on every request (what models.verify cost before its cache), so the
cost budget per loop turn is seen on its own.

burst: `--requests` QoS 0 command requests written to the broker in one burst (the mix of
tests/test_control_flood.py), then `status` asked every 0.5 s until answered: the time from the
broker having taken the whole burst to the first reply. `--queue` is mosquitto's max_queued_messages
(its default is 1000): what the broker holds for the terminal, which the terminal must read (and
shed) before it sees the next request.

The terminal runs in this process (the real Service with the parts `faceonly run` builds, as in
tests/test_service_loop.py), so each frame's timing is read exactly; every MQTT client of the
benchmark runs in a child process, so none of their work lands in the terminal's process. The broker
is the test suite's mosquitto launcher (tests/broker.py). The flooding client and the broker stand for
other machines: they run at nice 19 (`--others-nice`). The machine's load is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TERMINAL = "t1"  # the id tests/test_control_flood.py's requester asks
BASE = f"faceonly/v1/dev/{TERMINAL}"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def looped_demo(folder: Path, seconds: float) -> Path:
    """The demo replay played over and over for `seconds` (its frames, a longer replay.json)."""
    from device.vision.demo import make_demo

    demo = make_demo(folder / "demo")
    frames = json.loads((demo / "replay.json").read_text())["frames"]
    period = frames[-1]["t"] + (frames[-1]["t"] - frames[-2]["t"])
    out = folder / "looped"
    out.mkdir()
    for f in frames:
        shutil.copy(demo / f["file"], out / f["file"])
    looped, k = [], 0
    while not looped or looped[-1]["t"] < seconds:
        looped += [{"file": f["file"], "t": round(f["t"] + k * period, 6)} for f in frames]
        k += 1
    (out / "replay.json").write_text(json.dumps({"format": 1, "frames": looped}))
    return out


class Terminal:
    """The real Service in a thread of this process."""

    def __init__(self, tmp: Path, broker_url: str, replay: Path, pace: str) -> None:
        from device.config import load_config
        from device.runtime.compose import build
        from device.runtime.lifecycle import Lifecycle
        from device.runtime.runtime_config import RuntimeConfig
        from device.runtime.service import Service

        cfg = load_config(
            None,
            {
                "terminal_id": TERMINAL,
                "service": {"state_dir": str(tmp / "state"), "health_interval_s": 1.0},
                "mqtt": {"broker": broker_url},
                "vision": {"source": f"replay:{replay}", "replay_pace": pace},
            },
        )
        terminal = build(cfg)
        self.store = terminal.store
        self.lifecycle = Lifecycle({})
        self.service = Service(RuntimeConfig(cfg), terminal, self.lifecycle, lambda: cfg)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def wait_frames(self, n: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.service.frames_done < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the terminal processed {self.service.frames_done} frames in {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.lifecycle.request_stop()
        self.thread.join(30)


# The flooding client and the broker stand for other machines: by default they run at the lowest CPU
# priority, so on this one they take the CPU only when the terminal does not need it (--others-nice).
OTHERS_NICE = 19


def _lowest_priority() -> None:
    os.setpriority(os.PRIO_PROCESS, 0, OTHERS_NICE)


def _child(*args: str) -> dict:
    """Run this script in a child process (`--role ...`); its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        preexec_fn=_lowest_priority,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_window(label: str, frames: list) -> dict:
    from device.runtime.looptimes import summary_ms

    frame, wait, turn, cpu = (
        summary_ms([f.frame_s for f in frames]),
        summary_ms([f.wait_s for f in frames]),
        summary_ms([f.turn_s for f in frames]),
        summary_ms([f.turn_cpu_s for f in frames]),
    )
    print(
        f"  {label:6s} {len(frames):5d} frames | frame ms p50 {frame['p50']:7.2f} p99 {frame['p99']:7.2f} "
        f"max {frame['max']:7.2f} | wait p99 {wait['p99']:6.2f} | turn p50 {turn['p50']:6.2f} "
        f"p99 {turn['p99']:6.2f} | turn CPU p50 {cpu['p50']:6.2f} p99 {cpu['p99']:6.2f}"
    )
    return {"frame": frame, "cpu": cpu}


def bench_verify(args: argparse.Namespace) -> int:
    from tests.broker import Broker

    print(f"before: {_load()}")
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        Broker(Path(tmp_name) / "mq", max_queued_messages=1000) as broker,
    ):
        tmp = Path(tmp_name)
        assert broker.proc is not None
        os.setpriority(os.PRIO_PROCESS, broker.proc.pid, OTHERS_NICE)
        replay = looped_demo(tmp, args.rounds * (args.seconds + 60) + 60)
        term = Terminal(tmp, broker.url, replay, args.pace)
        if args.no_cache:
            term.store._unchanged = lambda name: None  # type: ignore[method-assign]  # every call hashes every file
        try:
            term.wait_frames(10)
            loop = term.service.loop_times
            quiet_all, flood_all = [], []
            print(
                f"terminal on the demo replay ({args.pace} pace), models.verify "
                f"{'WITHOUT' if args.no_cache else 'with'} its cache; {args.rounds} rounds of {args.seconds:g} s "
                f"quiet, then {args.count} requests answered ok"
            )
            for n in range(args.rounds):
                quiet_start = time.monotonic()
                time.sleep(args.seconds)
                quiet = loop.between(quiet_start, time.monotonic())
                flood = _child(
                    "--role", "verify", "--port", str(broker.port), "--count", str(args.count),
                    "--window", str(args.window),
                )  # fmt: skip
                flooded = loop.between(flood["started"], flood["ended"])
                print(
                    f" round {n + 1}: {args.count} in {flood['seconds']:.2f} s ({args.count / flood['seconds']:.0f}/s), "
                    f"busy {flood['busy']}, unanswered and sent again {flood['resent_unanswered']}, model files "
                    f"hashed {flood['rehashed_models']} times, other errors {flood['other_errors']}"
                )
                q, f = _print_window("quiet", quiet), _print_window("flood", flooded)
                print(f"  frame p99 flood / quiet: {f['frame']['p99'] / q['frame']['p99']:.2f}x")
                quiet_all += quiet
                flood_all += flooded
            print(" all rounds:")
            q, f = _print_window("quiet", quiet_all), _print_window("flood", flood_all)
            print(
                f"  frame-loop p99 during the floods / quiet: {f['frame']['p99'] / q['frame']['p99']:.2f}x "
                f"(max {f['frame']['max'] / q['frame']['max']:.2f}x); the loop thread's CPU per turn, "
                f"p99: {f['cpu']['p99'] / q['cpu']['p99']:.2f}x"
            )
            print(f"  commands: {term.service.commands.stats()}")
        finally:
            term.stop()
    print(f"after: {_load()}")
    return 0


def bench_burst(args: argparse.Namespace) -> int:
    from tests.broker import Broker

    print(f"before: {_load()}")
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        Broker(Path(tmp_name) / "mq", max_queued_messages=args.queue) as broker,
    ):
        tmp = Path(tmp_name)
        assert broker.proc is not None
        os.setpriority(os.PRIO_PROCESS, broker.proc.pid, OTHERS_NICE)
        replay = looped_demo(tmp, 600)
        term = Terminal(tmp, broker.url, replay, args.pace)
        try:
            term.wait_frames(10)
            for run in range(args.runs):
                got = _child("--role", "burst", "--port", str(broker.port), "--requests", str(args.requests))
                stats = term.service.commands.stats()
                print(
                    f"run {run + 1}: {args.requests} QoS 0 requests taken by the broker in {got['burst_s']:.2f} s "
                    f"(broker queue limit {args.queue}); first reply {got['first_reply_s']:.2f} s after that; "
                    f"terminal: dropped {stats['dropped']}, "
                    f"frames {term.service.frames_done}"
                )
                time.sleep(2)
        finally:
            term.stop()
    print(f"after: {_load()}")
    return 0


def role_verify(args: argparse.Namespace) -> int:
    from tests.command_flood import flood_command

    result = flood_command(
        "127.0.0.1", args.port, BASE, "models.verify", args.count, window=args.window, timeout_s=900
    )
    print(json.dumps(result.as_dict()))
    return 0


def role_burst(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from tests.test_control_flood import NarrowRequester, _publish, flood

    kinds = [
        _publish(f"{BASE}/cmd/req/status", b"{}"),
        _publish(f"{BASE}/cmd/req/status", json.dumps({"reply_to": f"{BASE}/cmd/res/fl"}).encode()),
        _publish(f"{BASE}/cmd/req/restart", b'{"args": {}}'),
        _publish(f"{BASE}/cmd/req/x.y", b"\xff junk"),
    ]
    packets = b"".join(kinds[i % len(kinds)] for i in range(args.requests))
    req = NarrowRequester(SimpleNamespace(host="127.0.0.1", port=args.port))  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        ended = flood("127.0.0.1", args.port, packets)
        _, answered = req.first_answer(b"{}", 120)
    finally:
        req.client.disconnect()
        req.client.loop_stop()
    print(json.dumps({"burst_s": ended - started, "first_reply_s": answered - ended}))
    return 0


def main() -> int:
    global OTHERS_NICE  # one setting for the children and the broker
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", choices=["verify", "burst"], default="verify")
    ap.add_argument("--role", choices=["verify", "burst"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=1000, help="models.verify requests answered ok")
    ap.add_argument("--window", type=int, default=100, help="requests the flooding client keeps outstanding")
    ap.add_argument("--seconds", type=float, default=8.0, help="quiet stretch before each flood")
    ap.add_argument("--rounds", type=int, default=3, help="quiet stretch + flood, this many times")
    ap.add_argument("--pace", choices=["recorded", "fast"], default="recorded", help="demo replay pace")
    ap.add_argument("--no-cache", action="store_true", help="hash every model file on every models.verify")
    ap.add_argument("--requests", type=int, default=100_000, help="QoS 0 requests in the burst")
    ap.add_argument("--queue", type=int, default=1000, help="mosquitto max_queued_messages")
    ap.add_argument("--runs", type=int, default=3, help="bursts, one after the other")
    ap.add_argument(
        "--others-nice", type=int, default=OTHERS_NICE, help="nice of the flooding client and broker"
    )
    args = ap.parse_args()
    OTHERS_NICE = args.others_nice
    if args.role == "verify":
        return role_verify(args)
    if args.role == "burst":
        return role_burst(args)
    return bench_verify(args) if args.scenario == "verify" else bench_burst(args)


if __name__ == "__main__":
    raise SystemExit(main())
