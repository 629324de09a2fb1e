"""Staff accounts, their sessions, and API tokens for integrations; what each role may do.

Passwords are hashed with argon2id (argon2-cffi's PasswordHasher, its recommended parameters) and rehashed
at login when those parameters change. A session is a random 256-bit id in an HttpOnly, SameSite=Strict
cookie; the store keeps only its SHA-256 (a copy of the database opens no session), with its own CSRF token
that every state-changing request must echo in a header. An API token (`fo_<id>_<secret>`) belongs to one
integration with one role; the store keeps the secret's SHA-256 (a 256-bit random secret needs no slow hash),
and a token is revoked by name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from faceonly_backend.audit import Actor
from faceonly_backend.db import INTEGRITY_ERRORS, Database

ROLES = ("viewer", "hr", "admin")
# What each role may do. viewer: see decisions and the attendance report; hr: also people, consent,
# corrections, biometric views (thumbnails, raw bytes, the nearest subject) and exports; admin: also
# duplicate overrides, staff, tokens and the audit log.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"events.view", "attendance.view", "subjects.view", "terminals.view"}),
}
PERMISSIONS["hr"] = PERMISSIONS["viewer"] | {
    "events.biometric",
    "subjects.enrol",
    "subjects.remove",
    "consent.record",
    "corrections.make",
    "attendance.adjust",
    "attendance.export",
}
PERMISSIONS["admin"] = PERMISSIONS["hr"] | {
    "subjects.override",
    "staff.manage",
    "tokens.manage",
    "audit.view",
}
USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 10
TOKEN = re.compile(r"^fo_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


def allowed(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Staff:
    username: str
    role: str
    created_at: float
    created_by: str
    disabled_at: float | None

    def as_json(self) -> dict:
        return {
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "disabled": self.disabled_at is not None,
        }


@dataclass(frozen=True)
class Session:
    actor: Actor
    csrf: str
    expires_at: float


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    return role


class Accounts:
    def __init__(self, db: Database, session_hours: float = 12.0) -> None:
        self.db, self.session_s = db, session_hours * 3600
        self.hasher = PasswordHasher()
        # An unknown user name is checked against this, so a login takes as long either way.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        self._failures: dict[str, tuple[int, float]] = {}
        self._failures_lock = threading.Lock()

    # ---- staff ---------------------------------------------------------------------------------

    def add_staff(self, username: str, password: str, role: str, by: Actor | str) -> Staff:
        if not USERNAME.match(username):
            raise AccountError(f"a user name must match {USERNAME.pattern}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
        check_role(role)
        now = time.time()
        try:
            self.db.write(
                "INSERT INTO staff (username, password_hash, role, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                (username, self.hasher.hash(password), role, now, str(by)),
            )
        except INTEGRITY_ERRORS:
            raise AccountError(f"{username} exists already") from None
        return Staff(username, role, now, str(by), None)

    def staff(self) -> list[Staff]:
        rows = self.db.query(
            "SELECT username, role, created_at, created_by, disabled_at FROM staff ORDER BY username"
        )
        return [Staff(str(u), str(r), float(c), str(b), d) for u, r, c, b, d in rows]

    def get(self, username: str) -> Staff | None:
        return next((s for s in self.staff() if s.username == username), None)

    def any_admin(self) -> bool:
        rows = self.db.query("SELECT COUNT(*) FROM staff WHERE role = 'admin' AND disabled_at IS NULL")
        return int(rows[0][0]) > 0

    def set_role(self, username: str, role: str) -> str:
        """The new role; the previous one is returned for the audit log. The last admin keeps the role."""
        check_role(role)
        held = self.get(username)
        if held is None:
            raise AccountError(f"no staff member {username}")
        if held.role == "admin" and role != "admin" and self._admins() <= 1:
            raise AccountError("the last active admin cannot lose the admin role")
        self.db.write("UPDATE staff SET role = ? WHERE username = ?", (role, username))
        self.db.write(
            "DELETE FROM sessions WHERE username = ?", (username,)
        )  # log in again with the new role
        return held.role

    def set_password(self, username: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
        if not self.db.write(
            "UPDATE staff SET password_hash = ? WHERE username = ?", (self.hasher.hash(password), username)
        ):
            raise AccountError(f"no staff member {username}")
        self.db.write("DELETE FROM sessions WHERE username = ?", (username,))

    def disable(self, username: str) -> None:
        held = self.get(username)
        if held is None:
            raise AccountError(f"no staff member {username}")
        if held.role == "admin" and held.disabled_at is None and self._admins() <= 1:
            raise AccountError("the last active admin cannot be disabled")
        self.db.write("UPDATE staff SET disabled_at = ? WHERE username = ?", (time.time(), username))
        self.db.write("DELETE FROM sessions WHERE username = ?", (username,))

    def _admins(self) -> int:
        rows = self.db.query("SELECT COUNT(*) FROM staff WHERE role = 'admin' AND disabled_at IS NULL")
        return int(rows[0][0])

    # ---- logging in ------------------------------------------------------------------------------

    def _throttled(self, username: str) -> bool:
        """After 5 failed logins for one name, one try per 2^(n-5) s (at most a minute)."""
        with self._failures_lock:
            count, last = self._failures.get(username, (0, 0.0))
        return count >= 5 and time.monotonic() - last < min(60.0, 2.0 ** (count - 5))

    def _failed(self, username: str) -> None:
        with self._failures_lock:
            count, _ = self._failures.get(username, (0, 0.0))
            self._failures[username] = (count + 1, time.monotonic())
            if len(self._failures) > 10_000:  # bounded whatever names are tried
                self._failures.pop(next(iter(self._failures)))

    def login(self, username: str, password: str) -> tuple[str, Session]:
        """(session id for the cookie, the session); AccountError for any failure, one message for all."""
        if self._throttled(username):
            raise AccountError("too many failed logins for this user name: wait a minute")
        rows = self.db.query(
            "SELECT password_hash, role FROM staff WHERE username = ? AND disabled_at IS NULL", (username,)
        )
        stored, role = (str(rows[0][0]), str(rows[0][1])) if rows else (self._dummy, "")
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            self._failed(username)
            raise AccountError("wrong user name or password") from None
        if not rows:
            raise AccountError("wrong user name or password")
        with self._failures_lock:
            self._failures.pop(username, None)
        if self.hasher.check_needs_rehash(stored):
            self.db.write(
                "UPDATE staff SET password_hash = ? WHERE username = ?",
                (self.hasher.hash(password), username),
            )
        session_id, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
        self.db.write("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self.db.write(
            "INSERT INTO sessions (id_sha256, username, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (_sha(session_id), username, csrf, now, now + self.session_s),
        )
        return session_id, Session(Actor(username, role), csrf, now + self.session_s)

    def session(self, session_id: str) -> Session | None:
        rows = self.db.query(
            "SELECT s.username, st.role, s.csrf, s.expires_at FROM sessions s "
            "JOIN staff st ON st.username = s.username "
            "WHERE s.id_sha256 = ? AND s.expires_at > ? AND st.disabled_at IS NULL",
            (_sha(session_id), time.time()),
        )
        if not rows:
            return None
        username, role, csrf, expires = rows[0]
        return Session(Actor(str(username), str(role)), str(csrf), float(expires))

    def logout(self, session_id: str) -> None:
        self.db.write("DELETE FROM sessions WHERE id_sha256 = ?", (_sha(session_id),))

    # ---- API tokens ------------------------------------------------------------------------------

    def add_token(self, name: str, role: str, by: Actor | str) -> str:
        """A new token for integration `name` (shown once: only its hash is kept)."""
        if not USERNAME.match(name):
            raise AccountError(f"a token name must match {USERNAME.pattern}")
        check_role(role)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        if self.db.query("SELECT 1 FROM api_tokens WHERE name = ? AND revoked_at IS NULL", (name,)):
            raise AccountError(f"an active token named {name} exists (revoke it first)")
        self.db.write(
            "INSERT INTO api_tokens (id, name, secret_sha256, role, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token_id, name, _sha(secret), role, time.time(), str(by)),
        )
        return f"fo_{token_id}_{secret}"

    def token(self, presented: str) -> Actor | None:
        found = TOKEN.match(presented)
        if found is None:
            return None
        token_id, secret = found.groups()
        rows = self.db.query(
            "SELECT name, secret_sha256, role FROM api_tokens WHERE id = ? AND revoked_at IS NULL",
            (token_id,),
        )
        if not rows or not hmac.compare_digest(str(rows[0][1]), _sha(secret)):
            return None
        self.db.write("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (time.time(), token_id))
        return Actor(f"token:{rows[0][0]}", str(rows[0][2]))

    def tokens(self) -> list[dict]:
        rows = self.db.query(
            "SELECT name, role, created_at, created_by, revoked_at, last_used_at FROM api_tokens "
            "ORDER BY name, created_at"
        )
        keys = ("name", "role", "created_at", "created_by", "revoked_at", "last_used_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def revoke_token(self, name: str) -> None:
        if not self.db.write(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name)
        ):
            raise AccountError(f"no active token named {name}")
