"""Face events recorded from the real pipeline, for the simulated fleet to publish as its own.

`record` runs the terminal's own stages (models checked against their manifest, detection, liveness, the
protector with its thumbnail, sealing and minimisation rules) over a replay and keeps what each face event
says (the protected body, before its envelope and signature). A simulated terminal wraps one of these in a
fresh envelope (its id, a new event id and time) and signs it with its own key, so the backend judges
exactly what real terminals send. Nothing here keeps a frame: only the protected bodies leave the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from device.config import Config


class RecordingError(ValueError):
    """The replay gave no face event, or a recording file cannot be read."""


def record(cfg: Config) -> list[dict[str, Any]]:
    """The protected bodies of every face event the pipeline makes over `cfg`'s source (a replay)."""
    from device.infra.modelstore import ModelError, ModelStore
    from device.privacy.protector import build_protector
    from device.vision.pipeline import build_pipeline
    from device.vision.sources import iter_frames, open_source

    store = ModelStore(cfg.service.models_dir)
    failed = [r for r in store.verify() if not r.ok]
    if failed:
        raise ModelError("; ".join(r.problem for r in failed))
    protector = build_protector(cfg, Path(cfg.service.state_dir))
    pipeline = build_pipeline(cfg, store)
    if protector.template is not None:
        protector.template.prepare(pipeline.embedding_dim)
    source = open_source(cfg.vision.source, cfg.vision)
    bodies: list[dict[str, Any]] = []
    try:
        with iter_frames(source) as frames:
            for frame in frames:
                bodies += [protector.protect(obs) for obs in pipeline.process(frame)]
        bodies += [protector.protect(obs) for obs in pipeline.flush()]
    finally:
        source.close()
    if not bodies:
        raise RecordingError(f"the source {cfg.vision.source} gave no face event")
    return bodies


def save(path: Path, bodies: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"format": "faceonly.fleet.events/1", "events": bodies}), encoding="utf-8")


def load(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordingError(f"recording {path}: {exc}") from None
    events = data.get("events") if isinstance(data, dict) else None
    if data.get("format") != "faceonly.fleet.events/1" or not isinstance(events, list) or not events:
        raise RecordingError(f"recording {path} is not a faceonly fleet recording with events")
    if not all(isinstance(e, dict) for e in events):
        raise RecordingError(f"recording {path}: every event must be a JSON object")
    return events
