"""`faceonly backend ...`: the back office from the command line, on the backend's machine (its config and
database); every change is audited as `cli:<login name>`, with the admin role that database access gives.

faceonly backend subjects add --config FILE --photos DIR [--broker URL] [--group G] [--end-date D]
                              [--override-of ID ... --reason TEXT]
faceonly backend subjects list | deactivate --id ID [--reason TEXT] | erase --id ID
faceonly backend consent record --id ID --name NAME --method paper|electronic [--given-at YYYY-MM-DDTHH:MM]
faceonly backend users add --username U --role admin|hr|viewer [--password-file F]   (else asked twice)
faceonly backend users list | set-role --username U --role R | disable --username U | passwd --username U
faceonly backend tokens add --name N --role R    (the token is printed once) | list | revoke --name N
faceonly backend audit verify [--expect SEQ:HASH] | show [--limit N]
faceonly backend retention run                   (the retention timers now; the service runs them itself)

Exit status: 0 done, 1 refused or failed (the reason printed), 2 invalid config or arguments.

Size (~400 lines): argument parsing and printing for the commands above only; what they do is in
faceonly_backend (people, accounts, audit, retention).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.config import ConfigError

if TYPE_CHECKING:
    from faceonly_backend.audit import Actor

EXIT_FAILED, EXIT_USAGE = 1, 2


Config = Callable[[argparse.Namespace], Any]


def _actor() -> Actor:
    # Imported when a command runs: the database drivers it brings (psycopg) would otherwise load in every
    # `faceonly` process, the terminal's too, since the CLI registers every subcommand.
    from faceonly_backend.audit import command_line_actor

    return command_line_actor()


def register(
    bs: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None], config: Config
) -> None:
    """`config`: the backend's config from a command's flags (faceonly_backend/cli/backend.py's)."""

    def command(
        group: argparse._SubParsersAction, name: str, help_text: str, func
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=help_text)
        common(parser)
        parser.set_defaults(func=func, load_config=config)
        return parser

    s = bs.add_parser("subjects", help="people: enrol from photos, list, deactivate, erase").add_subparsers(
        dest="subjects_command", required=True
    )
    add = command(
        s, "add", "one folder per subject (its id): consent checked, duplicates refused", _subjects_add
    )
    add.add_argument("--photos", type=Path, required=True)
    add.add_argument("--broker", default=None, help="push the new version to the registered terminals")
    add.add_argument("--group", default=None, help="the group (department) of everyone added")
    add.add_argument("--end-date", default=None, help="YYYY-MM-DD: templates purged after this day")
    add.add_argument(
        "--override-of", nargs="+", default=None, metavar="ID", help="accept a duplicate of these"
    )
    add.add_argument(
        "--reason", default=None, help="why the duplicate is accepted (required with --override-of)"
    )
    command(s, "list", "people and their status", _subjects_list)
    deactivate = command(
        s, "deactivate", "purge the templates everywhere, keep the records", _subjects_deactivate
    )
    deactivate.add_argument("--id", dest="subject", required=True)
    deactivate.add_argument("--reason", default="deactivated by an operator")
    deactivate.add_argument("--broker", default=None, help="send subject.purge to the terminals now")
    erase = command(s, "erase", "purge the templates and the name; records by policy", _subjects_erase)
    erase.add_argument("--id", dest="subject", required=True)
    erase.add_argument("--broker", default=None, help="send subject.purge to the terminals now")

    c = bs.add_parser("consent", help="consent records").add_subparsers(dest="consent_command", required=True)
    record = command(c, "record", "record a person's consent to the configured text", _consent_record)
    record.add_argument("--id", dest="subject", required=True)
    record.add_argument("--name", required=True, help="the person's name as on the form")
    record.add_argument("--method", choices=("paper", "electronic"), required=True)
    record.add_argument("--given-at", default=None, help="YYYY-MM-DDTHH:MM, the site's time (default: now)")

    u = bs.add_parser("users", help="staff accounts").add_subparsers(dest="users_command", required=True)
    user_add = command(u, "add", "a staff account", _users_add)
    user_add.add_argument("--username", required=True)
    user_add.add_argument("--role", choices=("admin", "hr", "viewer"), required=True)
    user_add.add_argument("--password-file", type=Path, default=None, help="else asked on the terminal")
    command(u, "list", "staff accounts", _users_list)
    set_role = command(u, "set-role", "change a role", _users_set_role)
    set_role.add_argument("--username", required=True)
    set_role.add_argument("--role", choices=("admin", "hr", "viewer"), required=True)
    command(u, "disable", "disable an account (its sessions end)", _users_disable).add_argument(
        "--username", required=True
    )
    passwd = command(u, "passwd", "set a new password (its sessions end)", _users_passwd)
    passwd.add_argument("--username", required=True)
    passwd.add_argument("--password-file", type=Path, default=None)

    t = bs.add_parser("tokens", help="API tokens, one per integration").add_subparsers(
        dest="tokens_command", required=True
    )
    token_add = command(t, "add", "a new token (printed once)", _tokens_add)
    token_add.add_argument("--name", required=True)
    token_add.add_argument("--role", choices=("admin", "hr", "viewer"), required=True)
    command(t, "list", "tokens (never their secrets)", _tokens_list)
    command(t, "revoke", "revoke a token", _tokens_revoke).add_argument("--name", required=True)

    a = bs.add_parser("audit", help="the chained audit log").add_subparsers(
        dest="audit_command", required=True
    )
    command(
        a, "verify", "walk the chain end to end; exit 1 naming the first bad entry", _audit_verify
    ).add_argument(
        "--expect", default=None, metavar="SEQ:HASH", help="a head recorded earlier that must still be there"
    )
    command(a, "show", "the newest entries", _audit_show).add_argument("--limit", type=int, default=20)

    r = bs.add_parser("retention", help="the retention timers").add_subparsers(
        dest="retention_command", required=True
    )
    command(r, "run", "purge every subject past its retention now", _retention_run).add_argument(
        "--broker", default=None, help="send subject.purge to the terminals now"
    )


class _Office:
    """The back office over the configured store, closed when done; None (the error printed) if it cannot."""

    def __init__(self, args: argparse.Namespace, broker: bool = False) -> None:
        self.args, self.broker = args, broker

    def __enter__(self):
        from faceonly_backend.live import LiveView
        from faceonly_backend.office import BackOffice
        from faceonly_backend.store import Store

        cfg = self.args.load_config(self.args)
        self.store = Store(cfg.db)
        options = cfg.mqtt.client_options() if self.broker and cfg.mqtt.broker else None
        self.office = BackOffice(cfg, self.store, options, LiveView(1))
        return self.office

    def __exit__(self, *exc) -> None:
        self.office.pusher.wait()
        self.store.close()


def _run(args: argparse.Namespace, work: Callable[[Any], int], broker: bool = False) -> int:
    from faceonly_backend.accounts import AccountError
    from faceonly_backend.attendance import AttendanceError
    from faceonly_backend.consent import ConsentError
    from faceonly_backend.enrol import EnrolError
    from faceonly_backend.removal import RemovalError
    from faceonly_backend.store import StoreError

    try:
        with _Office(args, broker) as office:
            return work(office)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (
        StoreError,
        EnrolError,
        ConsentError,
        RemovalError,
        AccountError,
        AttendanceError,
        OSError,
        ValueError,
    ) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_FAILED


# ---- subjects ------------------------------------------------------------------------------------


def _subjects_add(args: argparse.Namespace) -> int:
    from faceonly_backend.enrol import Details, Override

    if bool(args.override_of) != bool(args.reason):
        print("--override-of and --reason go together", file=sys.stderr)
        return EXIT_USAGE
    override = Override(tuple(args.override_of), args.reason) if args.override_of else None
    details = Details(group=args.group, end_date=args.end_date, override=override)

    def work(office) -> int:
        outcome = office.enrolment.from_photos(args.photos, _actor(), details)
        for subject, why in sorted(outcome.refused.items()):
            print(f"refused: {subject}: {why}", file=sys.stderr)
        if not outcome.added:
            print("nothing added", file=sys.stderr)
            return EXIT_FAILED
        print(
            f"gallery version {outcome.gallery_version}; added {', '.join(outcome.added)}; {len(outcome.refused)} refused"
        )
        return 0

    return _run(args, work, broker=True)


def _subjects_list(args: argparse.Namespace) -> int:
    def work(office) -> int:
        seen = office.people.last_seen()
        for p in office.people.all():
            consent = "consent" if office.consents.active(p.id) else "no consent"
            last = (
                dt.datetime.fromtimestamp(seen[p.id], office.cfg.site.zone).isoformat()
                if p.id in seen
                else "-"
            )
            print(f"{p.id}\t{p.display_name or ''}\t{p.status}\t{p.group or ''}\t{consent}\tlast seen {last}")
        return 0

    return _run(args, work)


def _receipt(receipt: dict[str, Any]) -> int:
    print(json.dumps(receipt, indent=2))
    return 0


def _subjects_deactivate(args: argparse.Namespace) -> int:
    return _run(args, lambda o: _receipt(o.removal.deactivate(args.subject, _actor(), args.reason)), True)


def _subjects_erase(args: argparse.Namespace) -> int:
    return _run(args, lambda o: _receipt(o.removal.erase(args.subject, _actor())), True)


def _consent_record(args: argparse.Namespace) -> int:
    def work(office) -> int:
        given = None
        if args.given_at:
            given = dt.datetime.fromisoformat(args.given_at).replace(tzinfo=office.cfg.site.zone).timestamp()
        made = office.enrolment.record_consent(args.subject, args.name, args.method, given, _actor())
        print(f"consent {made.id} recorded for {args.subject} (text version {made.text_version})")
        return 0

    return _run(args, work)


# ---- staff and tokens ----------------------------------------------------------------------------


def _password(path: Path | None) -> str:
    if path is not None:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def _users_add(args: argparse.Namespace) -> int:
    def work(office) -> int:
        actor = _actor()
        office.accounts.add_staff(args.username, _password(args.password_file), args.role, actor)
        office.audit.append(actor, "staff.add", args.username, role=args.role)
        print(f"staff account {args.username} ({args.role}) added")
        return 0

    return _run(args, work)


def _users_list(args: argparse.Namespace) -> int:
    def work(office) -> int:
        for s in office.accounts.staff():
            print(
                f"{s.username}\t{s.role}\t{'disabled' if s.disabled_at else 'active'}\tadded by {s.created_by}"
            )
        return 0

    return _run(args, work)


def _users_set_role(args: argparse.Namespace) -> int:
    def work(office) -> int:
        actor = _actor()
        before = office.accounts.set_role(args.username, args.role)
        office.audit.append(actor, "staff.role", args.username, role=args.role, before=before)
        print(f"{args.username}: {before} -> {args.role}")
        return 0

    return _run(args, work)


def _users_disable(args: argparse.Namespace) -> int:
    def work(office) -> int:
        office.accounts.disable(args.username)
        office.audit.append(_actor(), "staff.disable", args.username)
        print(f"{args.username} disabled")
        return 0

    return _run(args, work)


def _users_passwd(args: argparse.Namespace) -> int:
    def work(office) -> int:
        office.accounts.set_password(args.username, _password(args.password_file))
        office.audit.append(_actor(), "staff.password", args.username)
        print(f"{args.username}: new password set")
        return 0

    return _run(args, work)


def _tokens_add(args: argparse.Namespace) -> int:
    def work(office) -> int:
        actor = _actor()
        token = office.accounts.add_token(args.name, args.role, actor)
        office.audit.append(actor, "token.add", args.name, role=args.role)
        print(token)
        return 0

    return _run(args, work)


def _tokens_list(args: argparse.Namespace) -> int:
    def work(office) -> int:
        for t in office.accounts.tokens():
            state = "revoked" if t["revoked_at"] else "active"
            print(f"{t['name']}\t{t['role']}\t{state}\tadded by {t['created_by']}")
        return 0

    return _run(args, work)


def _tokens_revoke(args: argparse.Namespace) -> int:
    def work(office) -> int:
        office.accounts.revoke_token(args.name)
        office.audit.append(_actor(), "token.revoke", args.name)
        print(f"token {args.name} revoked")
        return 0

    return _run(args, work)


# ---- the audit log and retention -----------------------------------------------------------------


def _audit_verify(args: argparse.Namespace) -> int:
    expect = None
    if args.expect:
        seq, _, digest = args.expect.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            print("--expect is SEQ:HASH (the head a verify printed earlier)", file=sys.stderr)
            return EXIT_USAGE
        expect = (int(seq), digest)

    def work(office) -> int:
        verdict = office.audit.verify(expect)
        if verdict.ok:
            print(f"audit log OK: {verdict.entries} entries, head {verdict.head_seq}:{verdict.head_hash}")
            return 0
        print(
            f"audit log BROKEN at entry {verdict.first_bad}: {verdict.problem} "
            f"({verdict.entries} entries hold before it, up to {verdict.head_seq}:{verdict.head_hash})",
            file=sys.stderr,
        )
        return EXIT_FAILED

    return _run(args, work)


def _audit_show(args: argparse.Namespace) -> int:
    def work(office) -> int:
        for e in reversed(office.audit.entries(args.limit)):
            when = dt.datetime.fromtimestamp(e.at, office.cfg.site.zone).isoformat(timespec="seconds")
            print(
                f"{e.seq}\t{when}\t{e.actor}\t{e.action}\t{e.target}\t{json.dumps(e.details, sort_keys=True)}"
            )
        return 0

    return _run(args, work)


def _retention_run(args: argparse.Namespace) -> int:
    def work(office) -> int:
        done = office.removal.sweep()
        for purge_id in done:
            print(json.dumps(office.purges.receipt(purge_id)))
        print(f"{len(done)} subjects past their retention purged", file=sys.stderr)
        return 0

    return _run(args, work, broker=True)
