"""`faceonly bench` end to end: a real replay, the real pipeline, a real mosquitto, its JSON document."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from device.cli import main
from faceonly_lab.bench import report
from tests.broker import Broker
from tests.vision_helpers import model_store

SCHEMA = Path(__file__).resolve().parent.parent / "faceonly_lab/bench/schema.json"
STAGES = (
    "decode",
    "detect",
    "track",
    "quality",
    "landmarks",
    "liveness",
    "align",
    "embed",
    "protect",
    "publish",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from device.vision.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo") / "replay")


def _numbers(node, path="") -> list[str]:
    """Paths of every leaf that is not a finite number (strings only where the schema says so)."""
    bad = []
    if isinstance(node, dict):
        for k, v in node.items():
            bad += _numbers(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            bad += _numbers(v, f"{path}[{i}]")
    elif isinstance(node, str):
        if path.rsplit(".", 1)[-1] not in ("source", "resolution", "cpu", "python", "embedder_runtime"):
            bad.append(path)
    elif isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        bad.append(path)
    return bad


def _bench(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out), *args]) == 0
    text = out.read_text()
    # Only figures: no pixel data (a frame or a crop would be thousands of numbers or a long string).
    assert len(text) < 200_000
    return json.loads(text)


def test_bench_json_has_every_figure_as_a_number(tmp_path, demo, capsys):
    model_store()
    with Broker(tmp_path / "mosq") as broker:
        doc = _bench(
            tmp_path,
            "--source", f"replay:{demo}", "--steady-frames", "8", "--scaling-frames", "1",
            "--broker", broker.url, "--embedder-runtime", "onnxruntime",
        )  # fmt: skip
    assert list(Draft202012Validator(json.loads(SCHEMA.read_text())).iter_errors(doc)) == []
    assert _numbers(doc) == []
    printed = capsys.readouterr().out
    assert "face frame under the challenge" in printed and "acceptance" in printed
    # Nobody set a target for this run: figures and the targets, no verdict.
    assert "MISSED" not in printed and " holds" not in printed
    judged = report.text(doc, judge=True)
    assert judged.count(" holds") + judged.count(" MISSED") == len(doc["acceptance"])
    # The steady mode held the track at its blink step: the mesh ran on every frame, the iris (two eyes) at
    # half rate on open eyes, nothing was decided.
    steady = doc["steady"]
    assert steady["held_undecided"] == 1 and steady["prompts"] == 1
    assert steady["frames"] <= steady["models"]["iris_landmark"]["n"] <= 2 * steady["frames"]
    assert steady["models"]["face_landmark"]["n"] == steady["frames"]
    replay = doc["replays"][0]
    assert replay["events"] >= 1 and replay["acked"] == replay["events"]
    assert replay["frame_to_ack_ms"]["n"] == replay["events"]
    assert set(STAGES) - {"embed", "align"} <= set(replay["stages"])
    assert [r["faces"] for r in doc["scaling"]["faces"]] == [1, 2, 4, 8]
    assert [r["resolution"] for r in doc["scaling"]["resolution"]] == ["360p", "720p", "1080p"]
    for name in (
        "face_frame_challenge_ms",
        "idle_frame_ms",
        "outside_inference_share",
        "frame_to_ack_p50_ms",
    ):
        assert doc["figures"][name] > 0
    assert "whole_replay_ratio_min" not in doc["acceptance"]  # no peer, no ratio
    # The face frame against the floors of the models it invoked, both sides measured in this run.
    floor = doc["acceptance"]["face_frame_over_floor"]
    frame_ms, floors_ms = floor["of"]
    assert floor["value"] == pytest.approx(frame_ms / floors_ms, abs=1e-3) and floor["value"] > 1
    assert f"{frame_ms:.2f} ms / its models' floors {floors_ms:.2f} ms" in printed
    assert set(doc["face_frame_floor"]["invokes_per_frame"]) <= set(doc["floors_ms"])
    # Each accepted face of the identification pass: one invoke, plus the mirror on a close call only.
    ident = replay["identification"]
    assert ident["accepted"] >= 1 and ident["enrolled"] == ident["accepted"]
    assert ident["matched"] + ident["false_matches"] <= ident["accepted"] and ident["false_matches"] == 0
    assert ident["embedder_invokes"] == ident["accepted"] + ident["mirrored"]
    # ... timed on ONNX Runtime here, under the embedder's own name.
    assert doc["machine"]["embedder_runtime"] == "onnxruntime" and "embedder on onnxruntime" in printed
    invokes = doc["acceptance"]["embedder_invokes_per_accepted"]
    assert invokes["of"] == [ident["embedder_invokes"], ident["accepted"]] and 1 <= invokes["value"] <= 2


def test_bench_with_the_peer_on_the_same_frames(tmp_path, demo):
    if os.environ.get("CI") != "true":
        pytest.importorskip(
            "face_recognition", reason="the bench extra (scripts/setup.sh --test installs it)"
        )
    doc = _bench(
        tmp_path,
        "--source", f"replay:{demo}", "--peer", "face_recognition", "--steady-frames", "2",
        "--scaling-frames", "1", "--max-frames", "12",
    )  # fmt: skip
    replay = doc["replays"][0]
    assert replay["peer"]["faces_encoded"] >= 1  # the peer found and encoded the demo's face
    assert replay["ratio"]["whole_replay"] > 1 and doc["steady"]["ratio"]["frame_p50"] > 1
    assert doc["acceptance"]["whole_replay_ratio_min"]["value"] == replay["ratio"]["whole_replay"]
    assert all("ratio" in row for row in doc["scaling"]["faces"] + doc["scaling"]["resolution"])


def test_bench_refuses_a_tampered_model(tmp_path, demo, capsys):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(model_store().root, models)
    victim = next(models.glob("*.tflite"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert main(["bench", "--source", f"replay:{demo}", "--models-dir", str(models)]) == 1
    assert "bench failed" in capsys.readouterr().err
