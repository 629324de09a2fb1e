"""`faceonly fleet-sim`: N simulated terminals in a few processes, against a broker or a cluster.

    faceonly fleet-sim keys --terminals 1000 --seed-file var/fleet/seed --out var/fleet/keys.csv
    faceonly fleet-sim record --out var/fleet/events.json [--replay DIR] [--config terminal.toml]
    faceonly fleet-sim --broker mqtt://a:1883,mqtt://b:1883 --terminals 1000 --rate 20 --duration 60 \
        --seed-file var/fleet/seed [--events var/fleet/events.json] [--command-key command.key.pub]

Each simulated terminal is a real MQTT client (faceonly_lab/fleet/simterminal.py): its own id and key (derived
from the seed file), a persistent session, the terminal's subscriptions, signed birth, will, health and face
events (recorded from the real pipeline), and the real command plane. It runs `--duration` seconds of events
at `--rate` per second (the whole fleet), waits up to `--drain` seconds for every event to be acknowledged,
and prints its figures; with `--duration 0` it holds the fleet online (answering commands) until Ctrl-C.
Exit status: 0 every event acknowledged, 1 some were not, 2 bad arguments, 3 a worker failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from device.transport.client import parse_broker_url

EXIT_UNACKED, EXIT_USAGE, EXIT_FAILED = 1, 2, 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet-sim", help="simulate a fleet of terminals (real MQTT clients) against a broker")
    p.add_argument(
        "--broker", default=None, help="mqtt://host:port, or a cluster's nodes separated by commas"
    )
    p.add_argument("--terminals", type=int, default=100, help="how many simulated terminals (default 100)")
    p.add_argument("--processes", type=int, default=min(4, os.cpu_count() or 1), help="worker processes")
    p.add_argument("--id-prefix", default="sim", help="terminal ids are PREFIX-00000, PREFIX-00001, ...")
    p.add_argument(
        "--seed-file", type=Path, default=Path("var/fleet/seed"), help="the fleet seed (made if new)"
    )
    p.add_argument(
        "--events", type=Path, default=None, help="a recording (`fleet-sim record`); default: made now"
    )
    p.add_argument(
        "--replay", type=Path, default=None, help="replay to record from (default: the demo replay)"
    )
    p.add_argument(
        "--rate", type=float, default=10.0, help="face events per second, whole fleet (default 10)"
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of events; 0: hold until Ctrl-C")
    p.add_argument("--drain", type=float, default=60.0, help="seconds to wait for every event's PUBACK after")
    p.add_argument(
        "--protocol", choices=("3.1.1", "5"), default="3.1.1", help="MQTT protocol (default 3.1.1)"
    )
    p.add_argument("--subscription-qos", type=int, choices=(0, 1), default=0, help="QoS of the subscriptions")
    p.add_argument("--prefix", default="faceonly", help="topic prefix")
    p.add_argument(
        "--command-key", type=Path, default=None, help="command public key (FILE.pub) terminals check"
    )
    p.add_argument("--gallery-key", type=Path, default=None, help="gallery public key: take gallery commands")
    p.add_argument("--gallery-terminals", type=int, default=None, help="how many take them (default: all)")
    p.add_argument(
        "--state-dir", type=Path, default=None, help="per-terminal nonces and galleries (default: RAM)"
    )
    p.add_argument("--health-interval", type=float, default=60.0, help="seconds between healths; 0: none")
    p.add_argument(
        "--connect-rate", type=float, default=500.0, help="first connections per second per process"
    )
    p.add_argument("--out", type=Path, default=Path("var/fleet/run"), help="acked-N.csv / unacked-N.csv here")
    p.add_argument("--json", action="store_true", help="print the final figures as JSON")
    p.set_defaults(func=_run)
    s = p.add_subparsers(dest="fleet_sim_command")
    keys = s.add_parser("keys", help="write the simulated terminals' public keys (for the backend)")
    keys.add_argument("--terminals", type=int, required=True)
    keys.add_argument("--id-prefix", default="sim")
    keys.add_argument("--seed-file", type=Path, default=Path("var/fleet/seed"))
    keys.add_argument("--out", type=Path, required=True, help="CSV: terminal_id,public_key")
    keys.set_defaults(func=_keys)
    rec = s.add_parser("record", help="record face events from the real pipeline on a replay")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--replay", type=Path, default=None, help="default: the demo replay")
    rec.add_argument("--config", type=Path, default=None, help="a terminal config (default: liveness off)")
    rec.set_defaults(func=_record)


def _keys(args: argparse.Namespace) -> int:
    from faceonly_lab.fleet.identities import public_keys, read_seed, terminal_ids, write_key_csv

    ids = terminal_ids(args.terminals, args.id_prefix)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = write_key_csv(args.out, public_keys(read_seed(args.seed_file), ids))
    print(
        f"{count} public keys written to {args.out} (register them: faceonly backend terminals add --from-csv)"
    )
    return 0


def _recording_config(replay: Path | None, config: Path | None) -> Any:
    import tempfile

    from device.config import load_config
    from device.infra.paths import demo_dir

    source = replay or demo_dir()
    overrides: dict[str, Any] = {"vision": {"source": f"replay:{source}", "replay_pace": "fast"}}
    if config is None:
        # A recording of accepted faces (embedding and thumbnail protected as configured): a replay of a photo
        # cannot pass the challenge, and a fleet mostly sees people passing.
        overrides["vision"]["liveness"] = {"policy": "off"}
    overrides["service"] = {"state_dir": tempfile.mkdtemp(prefix="faceonly-record-")}
    return load_config(config, overrides)


def _record(args: argparse.Namespace) -> int:
    from faceonly_lab.fleet.recording import record, save

    bodies = record(_recording_config(args.replay, args.config))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(args.out, bodies)
    decisions = [b.get("observation", {}).get("decision") for b in bodies]
    print(f"{len(bodies)} face events recorded to {args.out} ({decisions.count('accepted')} accepted)")
    return 0


def _events(args: argparse.Namespace) -> list[dict[str, Any]]:
    from faceonly_lab.fleet.recording import load, record

    if args.events is not None:
        return load(args.events)
    return record(_recording_config(args.replay, None))


def _run(args: argparse.Namespace) -> int:
    from device.config import ConfigError
    from device.transport.client import BrokerUrlError
    from faceonly_lab.fleet.identities import read_seed, terminal_ids
    from faceonly_lab.fleet.recording import RecordingError
    from faceonly_lab.fleet.simrun import Fleet, FleetError
    from faceonly_lab.fleet.spec import SimSpec

    if args.broker is None:
        print("fleet-sim: --broker is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        brokers = [str(parse_broker_url(u.strip())) for u in args.broker.split(",")]
        ids = terminal_ids(args.terminals, args.id_prefix)
    except (BrokerUrlError, ValueError) as exc:
        print(f"fleet-sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        events = _events(args) if args.duration > 0 else []
        command_key = _public_key(args.command_key)
    except (RecordingError, ConfigError, OSError, ValueError) as exc:
        print(f"fleet-sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.gallery_key is not None and args.state_dir is None:
        print(
            "fleet-sim: --gallery-key needs --state-dir (where each terminal keeps its gallery)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    spec = SimSpec(
        brokers=brokers,
        ids=[],
        seed=read_seed(args.seed_file),
        events=events,
        rate=args.rate,
        start_at=time.time() + 2.0,
        duration_s=args.duration,
        protocol=args.protocol,
        subscription_qos=args.subscription_qos,
        prefix=args.prefix,
        connect_rate=args.connect_rate,
        health_interval_s=args.health_interval,
        command_public_key=command_key,
        gallery_public_key=str(args.gallery_key) if args.gallery_key else None,
        gallery_count=args.terminals if args.gallery_terminals is None else args.gallery_terminals,
        state_root=str(args.state_dir) if args.state_dir else None,
    )
    fleet = Fleet(spec, ids, args.processes, args.out)
    try:
        return _drive(fleet, args)
    except FleetError as exc:
        print(str(exc), file=sys.stderr)
        fleet.stop(10)
        return EXIT_FAILED


def _public_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    from device.config.privacy import read_public_key_file

    return read_public_key_file(path)


def _line(started: float, t: dict[str, Any]) -> str:
    p99 = t["ack_p99_ms"]
    return (
        f"t={time.monotonic() - started:5.0f}s connected {t['connected']}/{t['terminals']}  events {t['created']} "
        f"acked {t['acked']} waiting {t['outbox']}  ack p99 {'-' if p99 is None else f'{p99:.0f} ms'}  "
        f"commands {t['commands']} reconnects {t['reconnects']}"
    )


def _drive(fleet: Any, args: argparse.Namespace) -> int:
    from device.infra.stopsignals import interrupt_on_stop_signals

    interrupt_on_stop_signals()
    started = time.monotonic()
    last = [0.0]

    def show(totals: dict[str, Any]) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            print(_line(started, totals), file=sys.stderr, flush=True)

    fleet.start()
    connected = False
    connect_s = 0.0
    try:
        connected = fleet.wait_until(lambda t: t["connected"] == t["terminals"], 120, show)
        connect_s = time.monotonic() - started
        if args.duration <= 0:
            print(f"fleet online ({connect_s:.1f} s); Ctrl-C stops it", file=sys.stderr, flush=True)
            fleet.wait_until(lambda t: False, float("inf"), show)
        else:
            fleet.wait_until(lambda t: False, 2.0 + args.duration, show)
            fleet.wait_until(lambda t: t["outbox"] == 0, args.drain, show)
    except KeyboardInterrupt:
        pass
    totals = fleet.stop()
    figures = {
        **totals,
        "all_connected": connected,
        "connect_s": round(connect_s, 1),
        "events_per_s": round(totals["acked"] / args.duration, 1) if args.duration > 0 else None,
        "unacked": len(fleet.unacked()),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(_line(started, totals))
        print(
            f"all {figures['terminals']} connected in {figures['connect_s']} s"
            if connected
            else f"only {totals['ever_connected']} of {totals['terminals']} terminals ever connected"
        )
        print(f"{figures['acked']} of {figures['created']} events acknowledged; {figures['unacked']} not")
    return 0 if figures["unacked"] == 0 else EXIT_UNACKED
