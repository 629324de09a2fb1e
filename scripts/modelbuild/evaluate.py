"""Interpreter and latency for the build's measurements (LFW verification: faceonly_lab.lfw)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def interpreter(path: Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    return interp


def latency_ms(
    path: Path, repeats: int = 50, threads: int = 1, feed: Callable[[Any], None] | None = None
) -> float:
    """Median invoke time (the default XNNPACK delegate) on the input `feed` sets, else a fixed random one."""
    interp = interpreter(path, threads)
    if feed is not None:
        feed(interp)
    else:
        rng = np.random.default_rng(0)
        for d in interp.get_input_details():
            dtype = np.dtype(d["dtype"])
            if dtype.kind == "f":
                data = rng.uniform(0, 1, d["shape"]).astype(dtype)
            else:
                data = rng.integers(-100, 100, d["shape"]).astype(dtype)
            interp.set_tensor(d["index"], data)
    for _ in range(5):
        interp.invoke()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 3)
