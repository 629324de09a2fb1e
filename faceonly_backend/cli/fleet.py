"""`faceonly fleet`: operate many terminals at once, and a local NATS cluster to try a fleet on.

    faceonly fleet --broker mqtt://a:1883,mqtt://b:1883 --protocol 3.1.1 --reply-qos 0 --ids-file ids.txt \
        --sign-key command.key cmd config.set --args '{"config": {"service": {"health_interval_s": 30}}}'
    faceonly fleet --broker ... --ids sim-00000,sim-00001 --sign-key command.key \
        gallery --file update.fogu --batch 100
    faceonly fleet cluster --dir var/nats [--nodes 3]      # runs until Ctrl-C; prints the URLs

`cmd` prints one JSON line per terminal ({terminal, status: ok | timeout | error:<code>, elapsed_s, result or
error}) and a summary on stderr; `gallery` prints its progress after each batch and the terminals that did
not take the update (running it again resumes them). Exit status: 0 every terminal answered ok, 1 some
answered with an error or not at all, 2 bad arguments, 3 the broker cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from device.infra.stopsignals import interrupt_on_stop_signals
from device.transport.client import (
    BrokerError,
    BrokerUrlError,
    ClientOptions,
    add_reply_qos_flag,
    parse_broker_url,
)

EXIT_SOME_FAILED, EXIT_USAGE, EXIT_BROKER = 1, 2, 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet", help="a signed command or a gallery rollout to many terminals; a local cluster"
    )
    p.add_argument(
        "--broker", default=None, help="mqtt://host:port, or a cluster's nodes separated by commas"
    )
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol (NATS: 3.1.1)")
    add_reply_qos_flag(p)
    p.add_argument("--username", default=None)
    p.add_argument("--password-file", type=Path, default=None)
    p.add_argument("--prefix", default="faceonly", help="topic prefix")
    p.add_argument("--ids", default=None, help="terminal ids separated by commas")
    p.add_argument("--ids-file", type=Path, default=None, help="one terminal id per line (or a keys CSV)")
    p.add_argument(
        "--sign-key", type=Path, default=None, help="command key: sign each request for its terminal"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a terminal has to answer (default 30)"
    )
    p.add_argument("--window", type=int, default=500, help="requests outstanding at a time (default 500)")
    s = p.add_subparsers(dest="fleet_command", required=True)
    cmd = s.add_parser("cmd", help="one command to every terminal; one JSON line per terminal")
    cmd.add_argument("name")
    cmd.add_argument("--args", default="{}", help="the command's arguments, JSON")
    cmd.set_defaults(func=_cmd)
    gal = s.add_parser("gallery", help="roll a gallery update out in batches, with progress")
    gal.add_argument("--file", type=Path, required=True, help="an update file (faceonly gallery build/delta)")
    gal.epilog = "chunks are sealed to each terminal's key: --ids-file is a terminal_id,public_key CSV"
    gal.add_argument("--batch", type=int, default=100, help="terminals per batch (default 100)")
    gal.set_defaults(func=_gallery)
    cl = s.add_parser("cluster", help="run a local NATS cluster (the pinned server) until Ctrl-C")
    cl.add_argument("--dir", type=Path, default=Path("var/nats"), help="its configs, stores and logs")
    cl.add_argument("--nodes", type=int, default=3)
    cl.set_defaults(func=_cluster)


def _ids(args: argparse.Namespace) -> list[str]:
    return list(_ids_and_keys(args))


def _ids_and_keys(args: argparse.Namespace) -> dict[str, bytes | None]:
    """The terminals named by --ids and --ids-file, each with the public key the file gives (a keys CSV of
    `faceonly fleet-sim keys` or the backend: terminal_id,public_key), else None."""
    from device.config.privacy import decode_public_key
    from device.transport.topics import check_terminal_id

    found: dict[str, bytes | None] = {}
    if args.ids:
        found.update((check_terminal_id(i.strip()), None) for i in args.ids.split(",") if i.strip())
    if args.ids_file is not None:
        for line in args.ids_file.read_text(encoding="utf-8").splitlines():
            fields = [f.strip() for f in line.split(",")]
            if not fields[0] or fields[0] == "terminal_id" or fields[0].startswith("#"):
                continue
            key = decode_public_key(fields[1]) if len(fields) > 1 and fields[1] else None
            found[check_terminal_id(fields[0])] = key
    if not found:
        raise ValueError("no terminals: give --ids or --ids-file")
    return found


def _requester(args: argparse.Namespace):
    from device.transport.auth import read_signing_key
    from faceonly_backend.fleetops import FleetRequester

    if args.broker is None:
        raise ValueError("--broker is required")
    password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n") if args.password_file else None
    options = [
        ClientOptions(parse_broker_url(u.strip()), args.protocol, args.username, password)
        for u in args.broker.split(",")
    ]
    key = read_signing_key(args.sign_key) if args.sign_key is not None else None
    return FleetRequester(options, args.prefix, key, reply_qos=args.reply_qos)


def _cmd(args: argparse.Namespace) -> int:
    try:
        ids = _ids(args)
        cmd_args = json.loads(args.args)
        if not isinstance(cmd_args, dict):
            raise ValueError("--args must be a JSON object")
        requester = _requester(args)
    except (BrokerUrlError, ValueError, OSError) as exc:
        if isinstance(exc, BrokerError | ConnectionError):
            print(f"fleet: {exc}", file=sys.stderr)
            return EXIT_BROKER
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        outcomes = requester.request_many(
            ids, args.name, cmd_args, timeout_s=args.timeout, window=args.window
        )
    finally:
        requester.close()
    for outcome in outcomes.values():
        print(json.dumps(outcome.as_json()))
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(
        f"{args.name} to {len(ids)} terminals in {time.monotonic() - started:.1f} s: {summary}",
        file=sys.stderr,
    )
    return 0 if counts.get("ok", 0) == len(ids) else EXIT_SOME_FAILED


def _gallery(args: argparse.Namespace) -> int:
    from device.identity.operator import read_update
    from faceonly_backend.fleetops import RolloutProgress, rollout

    try:
        found = _ids_and_keys(args)
        keys = {t: k for t, k in found.items() if k is not None}
        if len(keys) < len(found):
            raise ValueError(
                "gallery chunks are sealed to each terminal: --ids-file must give its public key "
                "(terminal_id,public_key lines)"
            )
        ids = list(found)
        update = read_update(args.file)
        requester = _requester(args)
    except (BrokerError, ConnectionError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except (BrokerUrlError, ValueError, OSError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def progress(p: RolloutProgress) -> None:
        print(
            f"batch {p.batch}/{p.batches}: {p.terminals_done}/{p.terminals} terminals tried, {p.at_version} hold "
            f"version {update.manifest['version']}" + (f", {len(p.failed)} failed" if p.failed else ""),
            flush=True,
        )
        for terminal, why in p.failed.items():
            print(f"  {terminal}: {why}", flush=True)

    try:
        outcomes = rollout(
            requester, ids, update, keys, batch_size=args.batch, timeout_s=args.timeout, progress=progress
        )
    finally:
        requester.close()
    failed = [t for t, o in outcomes.items() if not o.ok]
    print(
        f"gallery version {update.manifest['version']} on {len(ids) - len(failed)} of {len(ids)} terminals"
        + (f"; run again to resume {len(failed)}" if failed else "")
    )
    return 0 if not failed else EXIT_SOME_FAILED


def _cluster(args: argparse.Namespace) -> int:
    from faceonly_backend.natscluster import ClusterError, NatsCluster

    try:
        cluster = NatsCluster(args.dir, args.nodes)
        cluster.start()
    except ClusterError as exc:
        print(f"fleet cluster: {exc}", file=sys.stderr)
        return EXIT_BROKER
    urls = {"mqtt": cluster.mqtt_urls, "nats": cluster.nats_urls}
    (args.dir / "urls.json").write_text(json.dumps(urls, indent=2) + "\n", encoding="utf-8")
    print(f"mqtt: {','.join(urls['mqtt'])}\nnats: {','.join(urls['nats'])}", flush=True)
    print(
        f"(also in {args.dir / 'urls.json'}; logs in {args.dir}; Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    interrupt_on_stop_signals()
    try:
        while all(n.running for n in cluster.nodes):
            time.sleep(1.0)
        print("a node exited; stopping the cluster", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0
