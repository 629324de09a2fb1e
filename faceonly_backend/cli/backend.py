"""`faceonly backend`: the reference backend (faceonly_backend/) and its operator commands.

faceonly backend --broker URL --db PATH_OR_URL --http HOST:PORT --state-dir DIR [--config FILE] [--auth open]
faceonly backend --broker URL[,URL...] --nats URL[,URL...] ...   # on a NATS cluster (its JetStream)
faceonly backend --validate-config [--config FILE ...]
faceonly backend terminals add --db PATH_OR_URL --id T --public-key K
faceonly backend terminals add --db PATH_OR_URL --id T --from-broker URL [--confirm KEY_ID]   # from privacy.report
faceonly backend terminals list --db PATH_OR_URL
faceonly backend subjects | consent | users | tokens | audit | retention ...   (faceonly_backend/cli/backoffice.py)

Exit status: 0 clean stop, 1 a start-up failure worth retrying (broker, database), 2 invalid config,
3 a permanent fault (unreadable key, state dir that is not a directory), 4 another instance holds the state dir.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from device.cli import announce
from device.config import ConfigError

log = logging.getLogger(__name__)
EXIT_FATAL, EXIT_CONFIG, EXIT_PERMANENT, EXIT_LOCKED = 1, 2, 3, 4


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backend", help="run the reference backend: verify, identify, attendance, a page")
    _common(b)
    b.add_argument(
        "--broker",
        default=None,
        help="mqtt://host:port or mqtts://host:port (MQTT 5); a cluster's nodes separated by commas",
    )
    b.add_argument(
        "--nats",
        default=None,
        help="nats://host:port of a NATS cluster's nodes, separated by commas: ingest from its JetStream "
        "(implies MQTT 3.1.1 and QoS 0 reply subscriptions)",
    )
    b.add_argument("--http", default=None, help="HOST:PORT of the page (default 127.0.0.1:8080)")
    b.add_argument("--group", default=None, help="shared-subscription group (instances that split the load)")
    b.add_argument(
        "--auth",
        choices=("accounts", "open"),
        default=None,
        help="accounts (staff logins, API tokens; the default) or open (a lab on loopback: no logins)",
    )
    b.add_argument("--validate-config", action="store_true", help="check the config and exit (0 = valid)")
    b.set_defaults(func=_run)
    bs = b.add_subparsers(dest="backend_command")
    t = bs.add_parser("terminals", help="the registered terminals and their pinned keys")
    ts = t.add_subparsers(dest="terminals_command", required=True)
    add = ts.add_parser("add", help="pin a terminal's Ed25519 public key (from its privacy.report)")
    _common(add)
    add.add_argument("--id", dest="terminal_id", default=None, type=_terminal_id)
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-csv",
        type=Path,
        metavar="FILE",
        help="pin many: terminal_id,public_key lines (e.g. from `faceonly fleet-sim keys`); no --id",
    )
    source.add_argument("--public-key", help="base64 (privacy.report: sends.signing.public_key)")
    source.add_argument(
        "--from-broker",
        metavar="URL",
        help="ask the running terminal for its privacy.report and pin the key it names, once --confirm matches",
    )
    add.add_argument(
        "--confirm",
        metavar="KEY_ID",
        help="the key id the terminal shows (its start log, `faceonly doctor`), checked",
    )
    add.set_defaults(func=_terminals_add)
    ls = ts.add_parser("list", help="registered terminals, state and gallery version")
    _common(ls)
    ls.set_defaults(func=_terminals_list)
    pb = bs.add_parser("passback", help="anti-passback across doors: two entries (or exits) in a row")
    _common(pb)
    pb.add_argument("--since", default=None, help="ISO time with zone, or unix seconds (default: all)")
    pb.set_defaults(func=_passback)
    from faceonly_backend.cli import backoffice

    backoffice.register(bs, _common, _config)


def _terminal_id(text: str) -> str:
    from device.transport.topics import check_terminal_id

    try:
        return check_terminal_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="the backend's TOML config")
    parser.add_argument("--db", default=None, help="SQLite file or postgresql:// URL")
    parser.add_argument("--state-dir", type=Path, default=None, help="the backend's own directory")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if getattr(args, "broker", None) is not None:
        urls = [u.strip() for u in args.broker.split(",")]
        flags.setdefault("mqtt", {})["broker"] = urls if len(urls) > 1 else urls[0]
    if getattr(args, "nats", None) is not None:
        flags["nats"] = {"servers": [u.strip() for u in args.nats.split(",")]}
        flags.setdefault("mqtt", {}).update(protocol="3.1.1", subscription_qos=0)
    if getattr(args, "group", None) is not None:
        flags.setdefault("mqtt", {})["group"] = args.group
    if getattr(args, "http", None) is not None:
        flags.setdefault("http", {})["listen"] = args.http
    if getattr(args, "auth", None) is not None:
        flags.setdefault("http", {})["auth"] = args.auth
    if args.db is not None:
        flags["store"] = {"db": args.db}
    if args.state_dir is not None:
        flags["state_dir"] = str(args.state_dir)
    return flags


def _config(args: argparse.Namespace):
    from faceonly_backend.config import load_backend_config

    return load_backend_config(args.config, _flags(args))


def _config_error(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"config error: {problem}", file=sys.stderr)
    return EXIT_CONFIG


def _run(args: argparse.Namespace) -> int:  # noqa: PLR0911 - one exit status per start-up failure
    try:
        cfg = _config(args)
    except ConfigError as exc:
        return _config_error(exc)
    if args.validate_config:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
        print("config OK", file=sys.stderr)
        return 0
    if cfg.mqtt.broker is None:
        return _config_error(ConfigError(["mqtt.broker: required to run (give --broker)"]))
    from device.privacy.hardening import disable_core_dumps
    from device.runtime import statedir
    from faceonly_backend.service import BackendService
    from faceonly_backend.store import StoreError

    disable_core_dumps()
    try:
        statedir.prepare(cfg.state_dir)
        statedir.hold(cfg.state_dir)
    except statedir.StateDirLocked as exc:
        log.error("cannot start: %s", exc)
        return EXIT_LOCKED
    except statedir.StateDirError as exc:
        log.error("cannot start (permanent fault): %s", exc)
        return EXIT_PERMANENT
    from device.infra.modelstore import ModelError

    try:
        service = BackendService(cfg)
    except StoreError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FATAL
    except (ValueError, OSError, ModelError) as exc:  # an unreadable key or token file, no model manifest
        log.error("cannot start (permanent fault): %s", " ".join(str(exc).split()))
        return EXIT_PERMANENT
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop_requested.set())
    from faceonly_backend.jetstream import StreamError

    try:
        service.start()
    except StreamError as exc:  # no durable consumer, no ingest: the backend does not run without one
        log.error("cannot start%s: %s", " (permanent fault)" if exc.permanent else "", exc)
        service.close()
        return EXIT_PERMANENT if exc.permanent else EXIT_FATAL
    except OSError as exc:
        log.error("cannot start: %s", exc)
        service.close()
        return EXIT_FATAL
    announce("backend page", service.page_url)
    try:
        service.loop()
    finally:
        service.close()
    return 0


def _terminals_add(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args)
    except ConfigError as exc:
        return _config_error(exc)
    if args.from_csv is not None:
        return _terminals_add_csv(args.from_csv, cfg.db)
    if args.terminal_id is None:
        print("terminals add: --id is required (or --from-csv)", file=sys.stderr)
        return EXIT_CONFIG
    return _terminals_add_one(args, cfg)


def _terminals_add_one(args: argparse.Namespace, cfg: Any) -> int:
    from device.config.privacy import decode_public_key
    from faceonly_backend.store import Store, StoreError

    if args.from_broker is not None:
        found = _key_from_report(args.from_broker, args.terminal_id, cfg.mqtt.topic_prefix)
        if found is None:
            return EXIT_FATAL
        args.public_key, key_id = found
        if args.confirm != key_id:
            print(
                f"terminal {args.terminal_id} reports signing key {key_id} ({args.public_key}); check it on the "
                "terminal itself (its start log line 'signing key id ...', or `faceonly doctor` there: "
                f"the keys check), then run again with --confirm {key_id}. Nothing registered.",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    try:
        decode_public_key(args.public_key)
    except ValueError as exc:
        print(f"--public-key {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        store = Store(cfg.db)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FATAL
    try:
        pinned = store.terminal_keys().get(args.terminal_id)
        if pinned is not None and pinned != args.public_key:
            print(
                f"terminal {args.terminal_id} is registered with another key; nothing changed",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        if store.add_terminal(args.terminal_id, args.public_key):
            from device.privacy.signing import key_id as fingerprint
            from faceonly_backend.audit import AuditLog, command_line_actor

            pinned_id = fingerprint(base64.b64decode(args.public_key))
            AuditLog(store).append(command_line_actor(), "terminal.add", args.terminal_id, key_id=pinned_id)
    finally:
        store.close()
    print(f"terminal {args.terminal_id} registered ({store.where})")
    return 0


def _terminals_add_csv(path: Path, db: str) -> int:
    """Pin every terminal_id,public_key line of `path` (all checked first: one bad line changes nothing)."""
    import csv

    from device.config.privacy import decode_public_key
    from device.transport.topics import check_terminal_id
    from faceonly_backend.store import Store, StoreError

    rows: list[tuple[str, str]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0] == "terminal_id" or row[0].startswith("#"):
                    continue
                if len(row) != 2:
                    raise ValueError(f"line {n}: expected terminal_id,public_key")
                decode_public_key(row[1])
                rows.append((check_terminal_id(row[0]), row[1]))
    except (OSError, ValueError) as exc:
        print(f"--from-csv {path}: {exc}; nothing registered", file=sys.stderr)
        return EXIT_CONFIG
    try:
        store = Store(db)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FATAL
    try:
        pinned = store.terminal_keys()
        clashes = [t for t, k in rows if pinned.get(t, k) != k]
        if clashes:
            print(
                f"{len(clashes)} terminals are registered with another key (e.g. {clashes[0]}); nothing changed",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        added = store.add_terminals(rows)
    finally:
        store.close()
    print(f"{added} terminals registered, {len(rows) - added} were already ({store.where})")
    return 0


def _key_from_report(broker: str, terminal: str, prefix: str) -> tuple[str, str] | None:
    """(public key, key id) from the terminal's privacy.report, or None (the reason printed)."""
    from device.identity.push import PushError, Requester
    from device.privacy.signing import key_id
    from device.transport.client import BrokerUrlError, ClientOptions, new_client, parse_broker_url
    from device.transport.topics import Topics

    try:
        options = ClientOptions(parse_broker_url(broker))
        client = new_client(options, f"backend-pin-{terminal}"[:60])
        client.connect(options.broker.host, options.broker.port)
        requester = Requester(client, Topics(prefix, terminal), 10.0)
    except (BrokerUrlError, OSError) as exc:
        print(f"cannot reach broker {broker}: {exc}", file=sys.stderr)
        return None
    try:
        reply = requester.request("privacy.report", {})
    except PushError as exc:
        print(f"terminal {terminal}: {exc}", file=sys.stderr)
        return None
    finally:
        requester.close()
    signing = ((reply.get("result") or {}).get("sends") or {}).get("signing") or {}
    public = signing.get("public_key")
    if not reply.get("ok") or not isinstance(public, str):
        print(
            f"terminal {terminal} sent no signing key in its privacy.report: {reply.get('error')}",
            file=sys.stderr,
        )
        return None
    return public, key_id(base64.b64decode(public))


def _terminals_list(args: argparse.Namespace) -> int:
    from faceonly_backend.store import Store, StoreError

    try:
        store = Store(_config(args).db)
    except ConfigError as exc:
        return _config_error(exc)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FATAL
    for t in store.terminals():
        print(f"{t.id}\t{t.state or 'unknown'}\tgallery {t.gallery_version}\tkey {t.public_key}")
    store.close()
    return 0


def _passback(args: argparse.Namespace) -> int:
    """Violations as JSON lines; exit 1 when there are any (a cron job notices)."""
    from datetime import datetime

    from faceonly_backend.passback import PassageLog
    from faceonly_backend.store import Store, StoreError

    try:
        cfg = _config(args)
    except ConfigError as exc:
        return _config_error(exc)
    since = 0.0
    if args.since is not None:
        try:
            since = float(args.since)
        except ValueError:
            since = datetime.fromisoformat(args.since).timestamp()
    try:
        store = Store(cfg.db)
    except StoreError as exc:
        print(f"backend passback: {exc}", file=sys.stderr)
        return 1
    try:
        found = PassageLog(store).report(since)
    finally:
        store.close()
    for violation in found:
        print(json.dumps(violation.as_json()))
    print(f"{len(found)} anti-passback violation(s)", file=sys.stderr)
    return 1 if found else 0
