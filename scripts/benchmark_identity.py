#!/usr/bin/env python3
"""1:N benchmark (printed, not a timed test): search time over 1k / 10k / 100k templates on one thread,
the memory of a 100k gallery, and the gallery's load + decrypt + verify time.

    OMP_NUM_THREADS=1 python scripts/benchmark_identity.py [--sizes 1000 10000 100000] [--repeats 200]

Templates are random unit vectors (timing and memory do not depend on whose faces they are).
"""

from __future__ import annotations

import os

# One thread for numpy's BLAS, as on a terminal core; must be set before numpy loads.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.contracts import ModelRef  # noqa: E402
from device.identity import gallery as gal  # noqa: E402
from device.identity import operator as op  # noqa: E402
from device.identity.matcher import Matcher  # noqa: E402
from device.identity.store import GalleryStore, open_box  # noqa: E402
from device.privacy.signing import Signer  # noqa: E402
from device.vision.embed import l2_normalise  # noqa: E402

MODEL = ModelRef("embedder", "embedder_dlib_resnet_int8.tflite", "0" * 64)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _search_ms(n: int, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """(wall, CPU) ms per search: on a shared machine the CPU time is what the search itself costs."""
    matcher = Matcher([f"s{i:06d}" for i in range(n)], list(l2_normalise(rng.normal(size=(n, 1, gal.DIM)))))
    probes = l2_normalise(rng.normal(size=(repeats, gal.DIM)))
    matcher.decide(probes[0], 0.95)
    t0, c0 = time.perf_counter(), time.process_time()
    for p in probes:
        matcher.decide(p, 0.95)
    return (time.perf_counter() - t0) / repeats * 1000, (time.process_time() - c0) / repeats * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, BLAS threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for n in args.sizes:
        wall, cpu = _search_ms(n, args.repeats, rng)
        print(f"1:N over {n:>7} templates: {cpu:7.3f} ms CPU per search, {wall:7.3f} ms wall (1 thread)")
    n = max(args.sizes)
    signer = Signer(SigningKey(b"\x07" * 32))
    subjects = [gal.Subject(f"s{i:06d}", None, l2_normalise(rng.normal(size=(1, gal.DIM)))) for i in range(n)]
    update = op.snapshot(signer, subjects, 1, MODEL)
    del subjects
    with tempfile.TemporaryDirectory() as tmp:
        box = open_box(Path(tmp) / "gallery.key")
        store = GalleryStore(Path(tmp) / "gallery.sealed", box)
        manifest = gal.check_manifest(update.manifest, signer.public_key, MODEL)
        store.save(manifest, gal.apply(manifest, update.body, None, MODEL))
        size_mb = (Path(tmp) / "gallery.sealed").stat().st_size / 1e6
        del update
        before = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        gallery, _ = store.load(signer.public_key, MODEL)
        loaded, loaded_cpu = time.perf_counter() - t0, time.process_time() - c0
        matcher = Matcher([s.id for s in gallery.subjects], [s.templates for s in gallery.subjects])
        indexed, indexed_cpu = time.perf_counter() - t0, time.process_time() - c0
        after = _rss_mb()
    print(f"gallery of {n} subjects: {size_mb:.1f} MB on disk (encrypted)")
    print(
        f"  load + decrypt + verify: {loaded_cpu * 1000:.0f} ms CPU ({loaded * 1000:.0f} wall); "
        f"+ matcher index: {indexed_cpu * 1000:.0f} ms CPU ({indexed * 1000:.0f} wall)"
    )
    print(
        f"  RSS grew {after - before:.0f} MB while loading it (matrix alone {matcher.matrix.nbytes / 1e6:.1f} MB); "
        f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
