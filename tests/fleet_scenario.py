"""A fleet on a real cluster, end to end: what tests/test_fleet_cluster.py (short) and
scripts/benchmark_fleet.py (full size) both run.

3 nats-server nodes (the pinned version) on free loopback ports, PostgreSQL (tests/postgres.py), two
`faceonly backend` processes sharing one durable JetStream consumer, and `faceonly fleet-sim`'s workers with
N terminals. The backends start first: the stream keeps a message only while a consumer wants it. Then: all
terminals connect; events at `rate` for `duration_s`; the `$MQTT_msgs` stream leader is SIGKILLed at
`kill_at_s` and started again at `restart_at_s`; the fleet drains; a signed command goes to every terminal;
a gallery is rolled out to the first `gallery_terminals`; and PostgreSQL is read back: every event a
terminal saw acknowledged must be a row, once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceonly_backend.natscluster import MQTT_STREAM, NatsCluster
from faceonly_lab.fleet.identities import public_keys, read_seed, terminal_ids
from faceonly_lab.fleet.simrun import Fleet, percentile
from faceonly_lab.fleet.spec import SimSpec
from tests.backend_parts import ROOT, BackendProc
from tests.postgres import Postgres


@dataclass
class Scenario:
    terminals: int = 500
    processes: int = 2
    rate: float = 20.0  # face events per second, whole fleet
    duration_s: float = 40.0
    kill_at_s: float | None = 20.0  # after the first event; None: no node is killed
    restart_at_s: float | None = 30.0
    backends: int = 2
    connect_limit_s: float = 60.0
    drain_limit_s: float = 60.0
    command_timeout_s: float = 60.0
    gallery_terminals: int = 0
    gallery_batch: int = 100
    subscription_qos: int = 0
    health_interval_s: float = 60.0
    connect_rate: float = 500.0  # per worker


@dataclass
class Figures:
    scenario: dict[str, Any]
    load_before: list[float]
    connect_s: float | None = None  # from the first connection attempt to all connected
    start_s: float | None = None  # from starting the simulator's processes to all connected
    killed: str | None = None
    created: int = 0
    acked: int = 0
    unacked: int = 0
    events_per_s: float | None = None
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    rows: int = 0
    acked_missing: int = 0
    rows_duplicated: int = 0
    duplicates_absorbed: int = 0
    redelivered: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    reconnected_terminals: int = 0
    reconnect_max_s: float | None = None
    reconnect_p99_s: float | None = None
    all_back_s: float | None = None  # the kill to the last reconnection it caused (all connected at the end)
    back_within_s: dict[str, int] = field(default_factory=dict)  # reconnections the kill caused, by delay
    most_attempts: int | None = None  # connection attempts the slowest of them took
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    command_ok: int = 0
    command_s: float | None = None
    command_status: dict[str, int] = field(default_factory=dict)
    rollout_ok: int = 0
    rollout_s: float | None = None
    load_after: list[float] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class _RssWatch(threading.Thread):
    """Peak resident memory of every node, sampled each second."""

    def __init__(self, cluster: NatsCluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.peak = cluster, {n.name: 0 for n in cluster.nodes}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for node in self.cluster.nodes:
                self.peak[node.name] = max(self.peak[node.name], node.rss_bytes())


@contextlib.contextmanager
def _removed(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _gallery_update(work: Path) -> tuple[Path, Path]:
    """A signed gallery update built from a real photo (scikit-image's astronaut), and the key's .pub."""
    import cv2
    from skimage import data

    photos = work / "photos" / "astronaut"
    photos.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(photos / "1.png"), data.astronaut()[:, :, ::-1])
    key, update = work / "gallery.key", work / "update.fogu"
    faceonly = [sys.executable, "-m", "device", "gallery"]
    subprocess.run([*faceonly, "keygen", "--out", str(key)], cwd=ROOT, check=True, capture_output=True)
    build = ["build", "--photos", str(photos.parent), "--key", str(key), "--out", str(update)]
    subprocess.run([*faceonly, *build], cwd=ROOT, check=True, capture_output=True)
    return update, key.with_name(key.name + ".pub")


def _record_events(work: Path) -> list[dict[str, Any]]:
    out = work / "events.json"
    cmd = [sys.executable, "-m", "device", "fleet-sim", "record", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return json.loads(out.read_text())["events"]


def _db_rows(url: str) -> dict[str, tuple[float, float]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id, created_at, received_at FROM attendance").fetchall()
        return {str(e): (float(c), float(r)) for e, c, r in rows}


def _backend_health(backends: list[BackendProc]) -> list[dict[str, Any]]:
    out = []
    for b in backends:
        with contextlib.suppress(OSError, ValueError):
            out.append(b.json("/api/health"))
    return out


def run(sc: Scenario, work: Path, say: Callable[[str], None] = print) -> Figures:
    figures = Figures(asdict(sc), _load())
    t0 = time.monotonic()

    def mark(text: str) -> None:
        line = f"[{time.monotonic() - t0:6.1f}s] {text}"
        figures.timeline.append(line)
        say(line)

    work.mkdir(parents=True, exist_ok=True)
    ids = terminal_ids(sc.terminals)
    seed = read_seed(work / "seed")
    command_key = work / "command.key"
    subprocess.run(
        [sys.executable, "-m", "device", "keys", "generate", "--out", str(command_key)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    gallery = _gallery_update(work) if sc.gallery_terminals else None
    events = _record_events(work)
    mark(f"{len(events)} recorded face events; {sc.terminals} terminals")
    state_root = Path("/dev/shm" if Path("/dev/shm").is_dir() else work) / f"faceonly-fleet-{os.getpid()}"
    with NatsCluster(work / "nats", 3) as cluster, Postgres() as pg, _removed(state_root):
        rss = _RssWatch(cluster)
        rss.start()
        from faceonly_backend.store import Store

        store = Store(pg.url)
        store.add_terminals(list(public_keys(seed, ids)))
        store.close()
        mqtt, nats = ",".join(cluster.mqtt_urls), ",".join(cluster.nats_urls)
        backends: list[BackendProc] = []
        try:
            for n in range(sc.backends):
                backends.append(BackendProc(work, mqtt, pg.url, f"b{n}", "--nats", nats))
            mark(
                f"cluster up (stream leader {cluster.stream_leader()}), {sc.backends} backends on one consumer"
            )
            fleet = _run_fleet(
                sc,
                work,
                cluster,
                figures,
                ids=ids,
                seed=seed,
                events=events,
                command_key=command_key,
                gallery=gallery,
                state_root=state_root,
                mark=mark,
            )
            _verify(fleet, pg.url, backends, figures, mark)
        finally:
            rss.stopped.set()
            figures.rss_peak_mb = {k: round(v / 2**20, 1) for k, v in rss.peak.items()}
            for b in backends:
                b.stop()
    figures.load_after = _load()
    return figures


def _run_fleet(  # noqa: PLR0913 - the scenario's middle: its parts are the parameters
    sc: Scenario,
    work: Path,
    cluster: NatsCluster,
    figures: Figures,
    ids: list[str],
    seed: bytes,
    events: list[dict[str, Any]],
    command_key: Path,
    gallery: tuple[Path, Path] | None,
    state_root: Path,
    mark: Callable[[str], None],
) -> Fleet:
    spec = SimSpec(
        brokers=cluster.mqtt_urls,
        ids=[],
        seed=seed,
        events=events,
        rate=sc.rate,
        start_at=0.0,
        duration_s=0.0,
        subscription_qos=sc.subscription_qos,
        command_public_key=base64.b64decode(Path(f"{command_key}.pub").read_text()),
        gallery_public_key=str(gallery[1]) if gallery else None,
        gallery_count=sc.gallery_terminals,
        state_root=str(state_root) if gallery else None,
        health_interval_s=sc.health_interval_s,
        connect_rate=sc.connect_rate,
    )
    fleet = Fleet(spec, ids, sc.processes, work / "fleet-out")
    started = time.monotonic()
    fleet.start()
    try:
        connected = fleet.wait_until(lambda t: t["connected"] == sc.terminals, sc.connect_limit_s)
        figures.start_s = round(time.monotonic() - started, 1)
        totals = fleet.totals()
        if connected and totals["connecting_since"] is not None:
            figures.connect_s = round(time.time() - totals["connecting_since"], 1)
        mark(
            f"{totals['connected']}/{sc.terminals} connected {figures.connect_s} s after the first attempt "
            f"({figures.start_s} s after starting the simulator's processes)"
        )
        start_at = time.time() + 2.0
        fleet.begin_events(start_at, sc.duration_s)
        mark(f"fleet publishing {sc.rate:g} events/s for {sc.duration_s:g} s")
        kill_done = restart_done = False
        kill_wall: float | None = None
        begin = start_at - time.time() + time.monotonic()
        while time.monotonic() < begin + sc.duration_s:
            totals = fleet.poll(0.5)
            elapsed = time.monotonic() - begin
            if sc.kill_at_s is not None and not kill_done and elapsed >= sc.kill_at_s:
                leader = cluster.stream_leader(MQTT_STREAM)
                assert leader is not None, "no stream leader to kill"
                cluster.kill(leader)
                figures.killed, kill_done, kill_wall = leader, True, time.time()
                mark(f"SIGKILLed {leader}, the {MQTT_STREAM} leader ({totals['connected']} connected)")
            if sc.restart_at_s is not None and kill_done and not restart_done and elapsed >= sc.restart_at_s:
                assert figures.killed is not None
                cluster.start_node(figures.killed, wait=False)
                restart_done = True
                mark(f"restarted {figures.killed}")
        if restart_done and figures.killed is not None:
            cluster.wait_ready(60)
            mark(f"{figures.killed} ready again; new stream leader {cluster.stream_leader()}")
        drained = fleet.wait_until(
            lambda t: t["outbox"] == 0 and t["connected"] == sc.terminals, sc.drain_limit_s
        )
        totals = fleet.totals()
        if kill_wall is not None and totals["connected"] == sc.terminals:
            # Some connections drop seconds after the kill: NATS closes an MQTT connection whose publish the
            # stream could not store within its 5 s while it elected a new leader. The last one back counts.
            caused = [(back, n) for lost, back, n in fleet.reconnects() if lost >= kill_wall - 1.0]
            figures.all_back_s = round(max(b for b, _ in caused) - kill_wall, 1) if caused else 0.0
            for limit in (5, 10, 20, 30, 60):
                figures.back_within_s[f"{limit}s"] = sum(1 for b, _ in caused if b - kill_wall <= limit)
            figures.most_attempts = max((n for _, n in caused), default=None)
            mark(
                f"every terminal connected again; the last {figures.all_back_s} s after the kill ({len(caused)} "
                f"reconnections; back within 5/10/20/30/60 s: {list(figures.back_within_s.values())}; at most "
                f"{figures.most_attempts} attempts)"
            )
        mark(f"drained: {drained} ({totals['acked']} acked, {totals['outbox']} waiting)")
        _command_all(cluster, ids, command_key, sc, figures, mark)
        if gallery is not None:
            chosen = ids[: sc.gallery_terminals]
            keys = {t: base64.b64decode(k) for t, k in public_keys(seed, chosen)}
            _rollout(cluster, chosen, keys, gallery[0], command_key, sc, figures, mark)
        totals = fleet.stop(60)
        figures.created, figures.acked = totals["created"], totals["acked"]
        figures.ack_p50_ms, figures.ack_p99_ms = totals["ack_p50_ms"], totals["ack_p99_ms"]
        figures.reconnected_terminals = totals["reconnects"]
        figures.reconnect_max_s = (
            None if totals["reconnect_max_s"] is None else round(totals["reconnect_max_s"], 2)
        )
        figures.reconnect_p99_s = (
            None if totals["reconnect_p99_s"] is None else round(totals["reconnect_p99_s"], 2)
        )
        return fleet
    except BaseException:
        fleet.stop(15)  # its workers and their connections go with the scenario
        raise


def _requester(cluster: NatsCluster, command_key: Path) -> Any:
    from device.transport.auth import read_signing_key
    from device.transport.client import ClientOptions, parse_broker_url
    from faceonly_backend.fleetops import FleetRequester

    options = [ClientOptions(parse_broker_url(u), "3.1.1") for u in cluster.mqtt_urls if u]
    return FleetRequester(options, "faceonly", read_signing_key(command_key), reply_qos=0)


def _command_all(
    cluster: NatsCluster,
    ids: list[str],
    command_key: Path,
    sc: Scenario,
    figures: Figures,
    mark: Callable[[str], None],
) -> None:
    requester = _requester(cluster, command_key)
    started = time.monotonic()
    try:
        args = {"config": {"service": {"health_interval_s": sc.health_interval_s}}}
        outcomes = requester.request_many(ids, "config.set", args, timeout_s=sc.command_timeout_s)
    finally:
        requester.close()
    figures.command_s = round(time.monotonic() - started, 1)
    for outcome in outcomes.values():
        figures.command_status[outcome.status] = figures.command_status.get(outcome.status, 0) + 1
    figures.command_ok = figures.command_status.get("ok", 0)
    mark(f"signed config.set to {len(ids)} terminals in {figures.command_s} s: {figures.command_status}")


def _rollout(  # noqa: PLR0913 - the rollout's parts
    cluster: NatsCluster,
    ids: list[str],
    keys: dict[str, bytes],
    update_file: Path,
    command_key: Path,
    sc: Scenario,
    figures: Figures,
    mark: Callable[[str], None],
) -> None:
    from device.identity.operator import read_update
    from faceonly_backend.fleetops import rollout

    requester = _requester(cluster, command_key)
    started = time.monotonic()
    try:
        outcomes = rollout(
            requester,
            ids,
            read_update(update_file),
            keys,
            batch_size=sc.gallery_batch,
            timeout_s=sc.command_timeout_s,
            progress=lambda p: mark(
                f"gallery batch {p.batch}/{p.batches}: {p.at_version}/{p.terminals} hold it"
                + (f", failed {list(p.failed.items())[:3]}" if p.failed else "")
            ),
        )
    finally:
        requester.close()
    figures.rollout_s = round(time.monotonic() - started, 1)
    figures.rollout_ok = sum(1 for o in outcomes.values() if o.ok)


VERIFY_LIMIT_S = 900.0


def _verify(
    fleet: Fleet, db_url: str, backends: list[BackendProc], figures: Figures, mark: Callable[[str], None]
) -> None:
    """Wait until PostgreSQL holds every acknowledged event, or the backends have had nothing left to read for
    10 s (then what is missing is missing), then read it back."""
    acked = fleet.acked()
    figures.unacked = len(fleet.unacked())
    ids = {e for e, _, _, _ in acked}
    made = [created for _, _, created, _ in acked]
    if len(made) > 1:  # the rate the terminals really made events at (a loaded simulator falls behind)
        figures.events_per_s = round(len(made) / (max(made) - min(made)), 1)
    deadline = time.monotonic() + VERIFY_LIMIT_S
    rows: dict[str, tuple[float, float]] = {}
    idle_since: float | None = None
    shown = 0.0
    while time.monotonic() < deadline:
        rows = _db_rows(db_url)
        health = _backend_health(backends)
        streams = [h.get("stream") or {} for h in health]
        idle = len(health) == len(backends) and all(
            s.get("lag") == 0 and s.get("ack_pending") == 0 and h.get("inbox_depth") == 0
            for s, h in zip(streams, health, strict=True)
        )
        idle_since = (idle_since or time.monotonic()) if idle else None
        if ids <= rows.keys() or (idle_since is not None and time.monotonic() - idle_since > 10):
            break
        if time.monotonic() - shown > 15:
            shown = time.monotonic()
            lag = [(s.get("lag"), s.get("ack_pending")) for s in streams]
            mark(
                f"waiting for the backends: {len(ids - rows.keys())} acknowledged events not yet rows; (lag, unacked) {lag}"
            )
        time.sleep(1.0)
    figures.rows = len(rows)
    figures.acked_missing = len(ids - rows.keys())
    figures.rows_duplicated = len(acked) - len(ids)  # the same event id acknowledged twice by the fleet
    lags = [(received - created) * 1000 for created, received in (rows[e] for e in ids if e in rows)]
    figures.e2e_p50_ms = _round(percentile(lags, 50))
    figures.e2e_p99_ms = _round(percentile(lags, 99))
    for health in _backend_health(backends):
        for reason, count in (health.get("quarantined") or {}).items():
            figures.quarantined[reason] = figures.quarantined.get(reason, 0) + count
        figures.redelivered += int((health.get("stream") or {}).get("redelivered") or 0)
    figures.duplicates_absorbed = figures.quarantined.get("duplicate", 0)
    mark(
        f"PostgreSQL: {figures.rows} rows; {len(ids)} acknowledged ids, {figures.acked_missing} missing; "
        f"duplicates absorbed {figures.duplicates_absorbed}, redelivered {figures.redelivered}"
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
