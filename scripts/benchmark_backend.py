"""Backend ingest speed: signed, sealed face events through the backend's own path, as its loop runs it.

Each event is made as a terminal makes it (an accepted observation, a 128-d embedding and a thumbnail
sealed to the backend key, an Ed25519 signature over RFC 8785 JSON); the backend then, per batch of
500: checks shape, pinned key and signature (`Ingest.handle`), opens the sealed box, searches the
central gallery (1:N over `--subjects` templates), and records the batch in one transaction
(`Store.record`). Printed: sustained events/s, and the time per event of each part.

    python scripts/benchmark_backend.py [--events 5000] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from device.identity.matcher import Matcher
from device.privacy.protector import encode_embedding
from device.privacy.seal import seal
from device.privacy.signing import Signer
from device.transport.envelope import encode, envelope
from faceonly_backend.ingest import Accepted, Ingest
from faceonly_backend.service import BATCH
from faceonly_backend.store import Store

TERMINAL = "bench-01"
SHA = "0" * 64


def _events(n: int, signer: Signer, backend_public: bytes, rng: np.random.Generator) -> list[bytes]:
    # As large as the median face-only PNG at the default 112 px (scripts/benchmark_thumbnail.py).
    thumbnail = base64.b64encode(rng.integers(0, 255, 10_700, dtype=np.uint8).tobytes()).decode()
    out = []
    for _ in range(n):
        vector = rng.normal(size=128).astype(np.float32)
        sealed = seal(
            backend_public,
            {"embedding": encode_embedding(vector), "embedding_dim": 128, "thumbnail": thumbnail},
        )
        body = {
            "observation": {
                "track_id": 1,
                "decision": "accepted",
                "time_source": "camera_utc",
                "first_seen": time.time(),
                "last_seen": time.time(),
                "best_frame_time": time.time(),
                "box": [10.0, 20.0, 90.0, 90.0],
                "quality": {
                    "face_px": 90.0,
                    "yaw": 1.5,
                    "pitch": -2.0,
                    "roll": 0.5,
                    "sharpness": 120.0,
                    "score": 0.8,
                },
                "liveness": {"steps_passed": 2.0},
                "reasons": [{"code": "liveness.passed", "text": "the challenge passed"}],
                "alignment": "mesh",
            },
            "biometric": {
                "template_key_id": None,
                "embedder": {"name": "embedder", "file": "e.tflite", "sha256": SHA},
                "sealed": sealed,
            },
        }
        out.append(encode(signer.sign(envelope("event.face", TERMINAL, body, ttl_s=3600))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--subjects", type=int, default=1000, help="central gallery size")
    parser.add_argument("--db", default=None, help="postgresql:// URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    signer, backend_key = Signer(SigningKey.generate()), PrivateKey.generate()
    print(f"making {args.events} signed, sealed events ...", flush=True)
    raws = _events(args.events, signer, bytes(backend_key.public_key), rng)
    templates = rng.normal(size=(args.subjects, 1, 128)).astype(np.float32)
    matcher = Matcher([f"s{i}" for i in range(args.subjects)], list(templates))

    def identify(vector: np.ndarray, sha: str | None) -> tuple[str | None, float]:
        if sha != SHA:
            return None, math.nan
        decision, _ = matcher.decide(vector, 0.95)
        return decision.subject, decision.score

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or str(Path(tmp) / "bench.sqlite"))
        store.add_terminal(TERMINAL, base64.b64encode(signer.public_key).decode())
        keys = store.terminal_keys()
        ingest = Ingest("faceonly", lambda: keys, bytes(backend_key), identify)
        topic = f"faceonly/v1/dev/{TERMINAL}/event/face"
        judge_s = store_s = 0.0
        recorded = 0
        start = time.perf_counter()
        for at in range(0, len(raws), BATCH):
            t0 = time.perf_counter()
            verdicts = [ingest.handle(topic, raw, time.time()) for raw in raws[at : at + BATCH]]
            records = [v.record for v in verdicts if isinstance(v, Accepted)]
            t1 = time.perf_counter()
            recorded += sum(store.record(records))
            store_s += time.perf_counter() - t1
            judge_s += t1 - t0
        total = time.perf_counter() - start
        store.close()
    kind = "PostgreSQL" if args.db else "SQLite (WAL)"
    print(
        f"{recorded} of {args.events} events recorded into {kind} in {total:.2f} s: {recorded / total:,.0f} events/s"
    )
    print(
        f"per event: verify + unseal + 1:N over {args.subjects} subjects {1e3 * judge_s / args.events:.3f} ms, "
        f"store {1e3 * store_s / args.events:.3f} ms (batches of {BATCH}, one transaction each)"
    )
    assert recorded == args.events, json.dumps({"recorded": recorded})


if __name__ == "__main__":
    main()
