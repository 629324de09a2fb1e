"""Timing probes for the bench: every stage sample and every model invoke, kept while a pass runs.

The service pays nothing for them: the pipeline calls its stage hook only when one is set, and model
timing wraps the interpreters the bench's own ModelStore hands out (the service's store is untouched).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np


class Samples:
    """Per-stage and per-model milliseconds of the current frame, folded into lists per pass."""

    def __init__(self) -> None:
        self.stages: dict[str, list[float]] = defaultdict(list)
        self.models: dict[str, list[float]] = defaultdict(list)
        self.frame_stage_ms = 0.0
        self.frame_model_ms = 0.0
        self.frame_invokes: list[str] = []  # the models invoked in the current frame, in order

    def stage(self, name: str, ms: float) -> None:
        self.stages[name].append(ms)
        self.frame_stage_ms += ms

    def model(self, name: str, ms: float) -> None:
        self.models[name].append(ms)
        self.frame_model_ms += ms
        self.frame_invokes.append(name)

    def start_frame(self) -> None:
        self.frame_stage_ms = self.frame_model_ms = 0.0
        self.frame_invokes = []


class _TimedInterpreter:
    """A LiteRT interpreter whose invoke() is timed; everything else passes through."""

    def __init__(self, interp: Any, name: str, probe: Probe) -> None:
        self._interp, self._name, self._probe = interp, name, probe

    def invoke(self) -> None:
        t0 = time.perf_counter()
        self._interp.invoke()
        self._probe.model(self._name, (time.perf_counter() - t0) * 1000.0)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._interp, attr)


class _TimedSession:
    """An ONNX Runtime session whose run() is timed under the model it stands in for; the rest passes through."""

    def __init__(self, session: Any, name: str, probe: Probe) -> None:
        self._session, self._name, self._probe = session, name, probe

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = self._session.run(*args, **kwargs)
        self._probe.model(self._name, (time.perf_counter() - t0) * 1000.0)
        return out

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._session, attr)


class Probe:
    """Where timing samples go; `samples` is swapped per pass so passes do not mix. `floors` keeps each
    model's fastest invoke over the whole run (after the warm-up): what that model costs at best in this
    pipeline, on this machine, in this run."""

    def __init__(self) -> None:
        self.samples = Samples()
        self.floors: dict[str, float] = {}

    def stage(self, name: str, ms: float) -> None:
        self.samples.stage(name, ms)

    def model(self, name: str, ms: float) -> None:
        self.samples.model(name, ms)
        self.floors[name] = min(ms, self.floors.get(name, ms))

    def new_pass(self) -> Samples:
        self.samples = Samples()
        return self.samples


class TimedStore:
    """A ModelStore whose interpreters report their invoke times (models are still sha256-checked by it)."""

    def __init__(self, store: Any, probe: Probe) -> None:
        self._store, self._probe = store, probe

    def interpreter(self, name: str, num_threads: int = 1) -> Any:
        return _TimedInterpreter(self._store.interpreter(name, num_threads), name, self._probe)

    def onnx_session(self, name: str, num_threads: int = 1) -> Any:
        # Timed as the model it runs ("embedder_onnx" is the embedder), so both runtimes fill the same rows.
        return _TimedSession(
            self._store.onnx_session(name, num_threads), name.removesuffix("_onnx"), self._probe
        )

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._store, attr)


def percentiles(values: list[float]) -> dict[str, float | int]:
    """p50, p95, mean (ms) and the sample count; zeros when the stage never ran."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0, "n": 0}
    a = np.asarray(values, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "mean": round(float(a.mean()), 3),
        "n": len(values),
    }


def peak_rss_mb() -> float:
    """The process's peak resident set (VmHWM), MB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def floor_comparison(frames: list[tuple[float, list[str]]], floors: dict[str, float]) -> dict[str, Any]:
    """Each reference steady frame against the sum of the floors of the models it invoked (the iris model
    runs on some frames only): the frame's time, that sum, and their ratio, as percentiles."""
    sums = [sum(floors[m] for m in invokes) for _, invokes in frames]
    ratios = [ms / s for (ms, _), s in zip(frames, sums, strict=True) if s > 0]
    invokes: dict[str, int] = {}
    for _, names in frames:
        for name in names:
            invokes[name] = invokes.get(name, 0) + 1
    return {
        "frame_ms": percentiles([ms for ms, _ in frames]),
        "floor_sum_ms": percentiles(sums),
        "ratio": percentiles(ratios),
        "invokes_per_frame": {m: round(n / max(len(frames), 1), 3) for m, n in sorted(invokes.items())},
    }
