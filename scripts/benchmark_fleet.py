"""A fleet on a real cluster, full size: 10,000 simulated terminals, 3 NATS nodes, PostgreSQL, 2 backends.

    python scripts/benchmark_fleet.py                       # the acceptance run (about 5 minutes here)
    python scripts/benchmark_fleet.py --terminals 2000 --duration 60 --kill-at 30 --restart-at 45
    python scripts/benchmark_fleet.py --sessions-only --terminals 400 --subscription-qos 1   # what QoS 1 costs

The default run: every terminal connects with a persistent session and the terminal's subscriptions; 100
face events per second for 100 s; the `$MQTT_msgs` stream leader SIGKILLed at 60 s and restarted at 90 s;
then a signed command to every terminal and a gallery to the first --gallery-terminals. It prints events/s,
publish-to-PUBACK and end-to-end (terminal to PostgreSQL row) latency, peak RSS per node, the reconnect
figures, and checks: every acknowledged event id is one row; every terminal back within 30 s; every terminal
answered. `--sessions-only` connects the terminals, holds them --hold seconds and prints what the cluster
spends on them (consumers, Raft groups, RSS, CPU): the measurement behind the terminals' QoS 0 subscriptions
on NATS (docs/fleet.md). Every figure is printed with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ (PostgreSQL, the scenario)

from faceonly_backend.natscluster import NatsCluster
from faceonly_lab.fleet.identities import read_seed, terminal_ids
from faceonly_lab.fleet.simrun import Fleet
from faceonly_lab.fleet.spec import SimSpec
from tests.fleet_scenario import Figures, Scenario, run


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--terminals", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=4, help="fleet-sim worker processes")
    p.add_argument("--rate", type=float, default=100.0, help="face events per second, whole fleet")
    p.add_argument("--duration", type=float, default=100.0, help="seconds of events")
    p.add_argument("--kill-at", type=float, default=60.0, help="SIGKILL the stream leader (s); <0: never")
    p.add_argument("--restart-at", type=float, default=90.0, help="start it again (s)")
    p.add_argument("--gallery-terminals", type=int, default=1000, help="roll a gallery out to this many")
    p.add_argument("--gallery-batch", type=int, default=100)
    p.add_argument("--subscription-qos", type=int, choices=(0, 1), default=0)
    p.add_argument("--health-interval", type=float, default=60.0)
    p.add_argument(
        "--connect-rate", type=float, default=500.0, help="first connections per second per process"
    )
    p.add_argument("--sessions-only", action="store_true", help="connect, hold, print the cluster's cost")
    p.add_argument("--hold", type=float, default=30.0, help="--sessions-only: seconds held after connecting")
    p.add_argument(
        "--consumer-memory", action="store_true", help="--sessions-only: NATS mqtt consumer_memory_storage"
    )
    p.add_argument("--work", type=Path, default=None, help="keep everything here (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args()


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f} (2 cores)"


def _print(f: Figures, sc: Scenario) -> bool:
    print(f"\n== fleet on a 3-node NATS {sc.terminals} terminals; {_load()} (before: {f.load_before})")
    print(
        f"connected        all {sc.terminals} {f.connect_s} s after the first attempt (limit 60); {f.start_s} s "
        "after starting the simulator's processes"
    )
    print(f"events           {f.created} made, {f.acked} acknowledged, {f.unacked} not; {f.events_per_s}/s")
    print(f"PUBACK latency   p50 {f.ack_p50_ms} ms, p99 {f.ack_p99_ms} ms")
    print(f"end to end       p50 {f.e2e_p50_ms} ms, p99 {f.e2e_p99_ms} ms (terminal's created_at to the row)")
    print(
        f"PostgreSQL       {f.rows} rows; acknowledged but missing {f.acked_missing}; "
        f"duplicates absorbed {f.duplicates_absorbed}; redelivered {f.redelivered}"
    )
    print(
        f"node killed      {f.killed}; terminals that reconnected {f.reconnected_terminals}; each back within "
        f"max {f.reconnect_max_s} s (p99 {f.reconnect_p99_s} s) of losing its connection; all connected again "
        f"{f.all_back_s} s after the kill"
    )
    print("RSS peak         " + ", ".join(f"{k} {v} MB" for k, v in f.rss_peak_mb.items()))
    print(f"signed command   {f.command_ok}/{sc.terminals} answered ok in {f.command_s} s {f.command_status}")
    if sc.gallery_terminals:
        print(
            f"gallery rollout  {f.rollout_ok}/{sc.gallery_terminals} hold it, {f.rollout_s} s "
            f"(batches of {sc.gallery_batch})"
        )
    print(f"quarantined      {f.quarantined}")
    checks = {
        "all connected within 60 s": f.connect_s is not None and f.connect_s <= 60,
        "every acknowledged event is a row, once": f.acked_missing == 0 and f.rows_duplicated == 0,
        "nothing left unacknowledged": f.unacked == 0,
        "all terminals back within 30 s": f.all_back_s is not None and f.all_back_s <= 30,
        "every terminal answered the command": f.command_ok == sc.terminals,
        "every gallery terminal holds the update": f.rollout_ok == sc.gallery_terminals,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return all(checks.values())


def _sessions_only(args: argparse.Namespace, work: Path) -> int:
    """Connect, hold, and print what the cluster spends on the terminals' sessions and subscriptions."""
    ids = terminal_ids(args.terminals)
    mqtt = {"consumer_memory_storage": True} if args.consumer_memory else {}
    with NatsCluster(work / "nats", 3, mqtt=mqtt) as cluster:
        before = cluster.totals()
        spec = SimSpec(
            brokers=cluster.mqtt_urls,
            ids=[],
            seed=read_seed(work / "seed"),
            events=[],
            subscription_qos=args.subscription_qos,
            health_interval_s=0,
            connect_rate=args.connect_rate,
        )
        fleet = Fleet(spec, ids, args.processes, work / "out")
        started = time.monotonic()
        fleet.start()
        fleet.wait_until(lambda t: t["ever_connected"] == len(ids), 300)
        connected_s = time.monotonic() - started
        fleet.wait_until(lambda t: False, 10)  # the SUBACKs still coming
        after_connect = cluster.totals()
        fleet.wait_until(lambda t: False, args.hold)
        held = cluster.totals()
        totals = fleet.stop()
    memory = ", consumers in memory" if args.consumer_memory else ""
    print(
        f"\n== {len(ids)} persistent sessions, subscriptions at QoS {args.subscription_qos}{memory}; {_load()}"
    )
    print(
        f"connected {totals['ever_connected']}/{len(ids)} in {connected_s:.1f} s; "
        f"refused subscriptions {totals['refused_subscriptions']}; connect failures {totals['connect_failures']}"
    )
    for name in held:
        cpu_connect = after_connect[name]["cpu_s"] - before[name]["cpu_s"]
        idle = (held[name]["cpu_s"] - after_connect[name]["cpu_s"]) / args.hold
        print(
            f"{name}: consumers {held[name].get('consumers')}, Raft groups {held[name].get('ha_assets')}, "
            f"RSS {held[name]['rss_bytes'] / 2**20:.0f} MB, CPU {cpu_connect:.1f} s to connect, "
            f"{idle:.3f} cores idle"
        )
    return 0


def main() -> int:
    args = _args()
    work = args.work or Path(tempfile.mkdtemp(prefix="faceonly-fleet-bench-"))
    print(f"work dir {work}; {_load()}", flush=True)
    try:
        if args.sessions_only:
            return _sessions_only(args, work)
        sc = Scenario(
            terminals=args.terminals,
            processes=args.processes,
            rate=args.rate,
            duration_s=args.duration,
            kill_at_s=args.kill_at if args.kill_at >= 0 else None,
            restart_at_s=args.restart_at if args.kill_at >= 0 else None,
            gallery_terminals=args.gallery_terminals,
            gallery_batch=args.gallery_batch,
            subscription_qos=args.subscription_qos,
            health_interval_s=args.health_interval,
            connect_rate=args.connect_rate,
            connect_limit_s=300.0,
            drain_limit_s=120.0,
            command_timeout_s=120.0,
        )
        figures = run(sc, work, lambda line: print(line, flush=True))
        ok = _print(figures, sc)
        if args.json is not None:
            args.json.write_text(
                json.dumps({**figures.as_json(), "load_end": _load(), "passed": ok}, indent=2)
            )
        return 0 if ok else 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
