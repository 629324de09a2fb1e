"""The bench's JSON document (schema: faceonly_lab/bench/schema.json) and its printed tables.

Acceptance figures are the issue's targets next to the measured value; on a shared machine they are read
with its load, which the document records.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

STAGE_ORDER = (
    "decode", "detect", "track", "quality", "landmarks", "liveness", "align", "embed", "match", "protect",
    "publish",
)  # fmt: skip

# name -> (target, "max" | "min"): the measured value must be at most / at least the target.
TARGETS: dict[str, tuple[float, str]] = {
    "face_frame_challenge_ms": (5.0, "max"),
    "idle_frame_ms": (1.0, "max"),
    "outside_inference_share": (0.40, "max"),
    "frame_to_ack_p50_ms": (12.0, "max"),
    "whole_replay_ratio_min": (50.0, "min"),
    "face_frame_ratio_min": (40.0, "min"),
}


def machine(threads: int, pin: int | None) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "threads": threads,
        "pinned_core": -1 if pin is None else pin,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def acceptance(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The issue's acceptance figures from a run; a figure the run could not measure is left out."""
    steady = report["steady"]
    values: dict[str, float] = {
        "face_frame_challenge_ms": steady["frame_ms"]["p50"],
        "idle_frame_ms": report["idle"]["frame_ms"]["p50"],
        "outside_inference_share": steady["outside_inference_share"],
    }
    acks = [r["frame_to_ack_ms"]["p50"] for r in report["replays"] if r["frame_to_ack_ms"]["n"]]
    if acks:
        values["frame_to_ack_p50_ms"] = max(acks)
    replay_ratios = [r["ratio"]["whole_replay"] for r in report["replays"] if "ratio" in r]
    if replay_ratios:
        values["whole_replay_ratio_min"] = min(replay_ratios)
        face = [r["ratio"]["face_frame_p50"] for r in report["replays"] if r["ratio"]["face_frame_p50"]]
        values["face_frame_ratio_min"] = min([*face, steady["ratio"]["frame_p50"]])
    return {k: {"value": v, "target": TARGETS[k][0]} for k, v in values.items()}


def holds(name: str, figure: dict[str, float]) -> bool:
    target, kind = TARGETS[name]
    return figure["value"] <= target if kind == "max" else figure["value"] >= target


def _ms(p: dict[str, Any]) -> str:
    return f"{p['p50']:8.2f} {p['p95']:8.2f}" if p["n"] else f"{'-':>8} {'-':>8}"


def text(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"faceonly bench: {m['cpu']}, {m['threads']} thread(s), "
        f"{'pinned to core ' + str(m['pinned_core']) if m['pinned_core'] >= 0 else 'not pinned'}, "
        f"load {m['load_avg_1m']} on {m['cores']} cores; peak RSS {report['peak_rss_mb']:.0f} MB (ours)",
    ]
    s, idle = report["steady"], report["idle"]
    lines.append(
        f"\nface frame under the challenge ({s['resolution']}, {s['faces']} face, held undecided: "
        f"{'yes' if s['held_undecided'] else 'NO'}): p50 {s['frame_ms']['p50']:.2f} ms, p95 "
        f"{s['frame_ms']['p95']:.2f} ms, models {s['model_ms']['p50']:.2f} ms, outside inference "
        f"{s['outside_inference_share']:.0%}, CPU {s['cpu_ms_per_frame']:.2f} ms/frame"
    )
    lines.append(
        f"idle frame (720p, no face): p50 {idle['frame_ms']['p50']:.2f} ms, p95 {idle['frame_ms']['p95']:.2f} ms"
    )
    if "peer" in s:
        lines.append(
            f"  peer on the same frame: p50 {s['peer']['frame_ms']['p50']:.1f} ms -> {s['ratio']['frame_p50']:.0f}x"
        )
    lines.append(
        "\nper stage, ms (p50 p95): steady | idle | "
        + " | ".join(_short(r["source"]) for r in report["replays"])
    )
    for stage in STAGE_ORDER:
        cols = [s["stages"].get(stage), idle["stages"].get(stage)]
        cols += [r["stages"].get(stage) for r in report["replays"]]
        if not any(cols):
            continue
        lines.append(f"  {stage:10s} " + " | ".join(_ms(c) if c else f"{'-':>8} {'-':>8}" for c in cols))
    lines.append(
        "models, ms per invoke (p50), steady: "
        + ", ".join(f"{k} {v['p50']:.2f}" for k, v in s["models"].items())
    )
    for r in report["replays"]:
        lines.append(
            f"\nreplay {r['source']}: {r['frames']} frames ({r['face_frames']} with face work), "
            f"{r['wall_s']:.2f} s, {r['fps']:.1f} fps, {r['events']} events ({r['acked']} acked), CPU "
            f"{r['cpu_ms_per_frame']:.2f} ms/frame"
        )
        if r["face_frames"]:
            lines.append(
                f"  face frame p50 {r['face_frame_ms']['p50']:.2f} ms, idle frame p50 "
                f"{r['idle_frame_ms']['p50']:.2f} ms, outside inference on face frames {r['outside_inference_share']:.0%}"
            )
        else:
            lines.append(
                f"  no face frames (no face found); idle frame p50 {r['idle_frame_ms']['p50']:.2f} ms"
            )
        if r["frame_to_ack_ms"]["n"]:
            a = r["frame_to_ack_ms"]
            lines.append(
                f"  frame to broker ack: p50 {a['p50']:.2f} ms, p95 {a['p95']:.2f} ms ({a['n']} events)"
            )
        if "peer" in r:
            p = r["peer"]
            per_face = (
                f", face frame p50 {p['face_frame_ms']['p50']:.1f} ms -> per face frame {r['ratio']['face_frame_p50']:.0f}x"
                if r["face_frames"]
                else ""
            )
            lines.append(
                f"  peer: {p['wall_s']:.2f} s ({p['fps']:.2f} fps, {p['faces_encoded']} faces encoded) -> whole replay "
                f"{r['ratio']['whole_replay']:.0f}x{per_face}"
            )
    for axis, rows in report.get("scaling", {}).items():
        lines.append(f"\nscaling by {axis}: ours p50 ms | peer p50 ms | ratio | faces found (ours)")
        for row in rows:
            peer = row.get("peer")
            lines.append(
                f"  {row['faces']} face(s) {row['resolution']:>6}: {row['frame_ms']['p50']:7.2f} | "
                + (
                    f"{peer['frame_ms']['p50']:8.1f} | {row['ratio']['frame_p50']:5.0f}x"
                    if peer
                    else "       - |     -"
                )
                + f" | {row['faces_detected']}"
            )
    lines.append("\nacceptance (target):")
    for name, fig in report["acceptance"].items():
        lines.append(
            f"  {name:26s} {fig['value']:9.3f} ({'<=' if TARGETS[name][1] == 'max' else '>='} "
            f"{fig['target']:g}) {'holds' if holds(name, fig) else 'MISSED'}"
        )
    return "\n".join(lines)


def _short(source: str) -> str:
    return source.rsplit("/", 1)[-1]
