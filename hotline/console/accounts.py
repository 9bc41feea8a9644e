"""Operator accounts, passwords, sessions and login lockout: plain functions over the database.

Used by both the web console (through Store.arun, off the event loop: argon2 takes tens of
milliseconds by design) and the `hotline operators` commands.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hotline.console.store import AGENCY, ROLES, audit
from hotline.store import Table, _ensure_table, now_iso, register_schema

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)  # the first lockout; each next one from that place doubles
MAX_LOCKOUT = timedelta(hours=24)

# Lockout is kept per username AND client address: failing logins from one place locks that
# name from that place only, so nobody can keep an admin out by failing from elsewhere. The
# backoff (each lockout twice as long as the last, until a success from that place) makes
# guessing from one address slower and slower.
LOGIN_THROTTLE = Table(
    "console_login_throttle",
    {
        "username": str,
        "client": str,  # the client address ("" when unknown)
        "failures": int,  # consecutive failures since the last success or lockout
        "lockouts": int,  # lockouts in a row (the backoff exponent)
        "last_failed_at": str,
        "locked_until": str,
    },
    pk=("username", "client"),
)
register_schema(LOGIN_THROTTLE)
SESSION_TTL = timedelta(hours=12)  # signed in for one working shift at most
SESSION_IDLE = timedelta(hours=2)  # an unattended screen signs itself out
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
MIN_PASSWORD = 8
MAX_PASSWORD = 256

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so a wrong name takes as long as a wrong
    password (the timing does not tell which accounts exist). Made on first use: hashing costs
    tens of milliseconds, which every `hotline` command would otherwise pay at import."""
    return _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A refused account operation; the message is Vietnamese (shown to operators)."""


@dataclass(frozen=True)
class Operator:
    username: str
    role: str
    display_name: str
    csrf_token: str = ""
    session_hash: str = ""
    agency_code: str = ""  # set for agency accounts only

    @property
    def label(self) -> str:
        return self.display_name or self.username


def _utc(iso: str | None) -> datetime | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_username(value: str) -> str:
    return unicodedata.normalize("NFC", value or "").strip().lower()


def check_username(value: str) -> str:
    name = clean_username(value)
    if not _USERNAME.match(name):
        raise AccountError(
            "Tên đăng nhập phải dài 2-32 ký tự, gồm chữ thường không dấu, số, dấu chấm, "
            "gạch ngang hoặc gạch dưới, bắt đầu bằng chữ hoặc số"
        )
    return name


def check_role(value: str) -> str:
    role = (value or "").strip().lower()
    if role not in ROLES and role != AGENCY:
        raise AccountError(
            f"Vai trò không hợp lệ: “{value[:40]}”. Chọn một trong: {', '.join((*ROLES, AGENCY))}"
        )
    return role


def check_password(password: str) -> str:
    password = unicodedata.normalize("NFC", password or "")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Mật khẩu phải có ít nhất {MIN_PASSWORD} ký tự")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"Mật khẩu dài quá {MAX_PASSWORD} ký tự")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def get_operator(db: sqlite_utils.Database, username: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM operators WHERE username = ?", [clean_username(username)]))
    return rows[0] if rows else None


def list_operators(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT username, display_name, role, agency_code, disabled, created_at,"
            " last_login_at, password_changed_at FROM operators ORDER BY username"
        )
    )


def add_operator(
    db: sqlite_utils.Database,
    username: str,
    role: str,
    password: str,
    *,
    actor: str,
    display_name: str = "",
    agency_code: str = "",
    ip: str | None = None,
) -> dict[str, Any]:
    name = check_username(username)
    role = check_role(role)
    agency_code = (agency_code or "").strip()
    if (role == AGENCY) != bool(agency_code):
        raise AccountError("Tài khoản cơ quan cần mã cơ quan (--agency), và chỉ tài khoản cơ quan")
    hashed = hash_password(password)
    display = unicodedata.normalize("NFC", display_name or "").strip()[:80]
    with db.atomic():
        if get_operator(db, name):
            raise AccountError(f"Đã có tài khoản “{name}”")
        now = now_iso()
        db.table("operators").insert(
            {
                "username": name,
                "display_name": display,
                "role": role,
                "agency_code": agency_code or None,
                "password_hash": hashed,
                "disabled": 0,
                "created_at": now,
                "updated_at": now,
                "password_changed_at": now,
            }
        )
        detail = {"role": role, **({"agency": agency_code} if agency_code else {})}
        audit(db, actor, "operator_add", name, detail, ip)
    return get_operator(db, name)  # type: ignore[return-value]


def _require(db: sqlite_utils.Database, username: str) -> dict[str, Any]:
    row = get_operator(db, username)
    if row is None:
        raise AccountError(f"Không có tài khoản “{clean_username(username)[:40]}”")
    return row


def set_password(
    db: sqlite_utils.Database, username: str, password: str, *, actor: str, ip: str | None = None
) -> None:
    hashed = hash_password(password)
    with db.atomic():
        row = _require(db, username)
        now = now_iso()
        db.execute(
            "UPDATE operators SET password_hash = ?, password_changed_at = ?, updated_at = ?"
            " WHERE username = ?",
            [hashed, now, now, row["username"]],
        )
        # Whoever was signed in with the old password is signed out.
        db.execute("DELETE FROM console_sessions WHERE username = ?", [row["username"]])
        _ensure_throttle(db)
        db.execute("DELETE FROM console_login_throttle WHERE username = ?", [row["username"]])
        audit(db, actor, "operator_password", row["username"], None, ip)


def set_disabled(
    db: sqlite_utils.Database,
    username: str,
    disabled: bool,
    *,
    actor: str,
    ip: str | None = None,
) -> None:
    with db.atomic():
        row = _require(db, username)
        if disabled and row["role"] == "admin" and not row["disabled"]:
            admins = db.execute(
                "SELECT COUNT(*) FROM operators WHERE role = 'admin' AND disabled = 0"
            ).fetchone()[0]
            if admins <= 1:
                raise AccountError("Không thể khóa quản trị viên cuối cùng")
        db.execute(
            "UPDATE operators SET disabled = ?, updated_at = ? WHERE username = ?",
            [1 if disabled else 0, now_iso(), row["username"]],
        )
        if disabled:
            db.execute("DELETE FROM console_sessions WHERE username = ?", [row["username"]])
        audit(
            db,
            actor,
            "operator_disable" if disabled else "operator_enable",
            row["username"],
            None,
            ip,
        )


def set_role(
    db: sqlite_utils.Database, username: str, role: str, *, actor: str, ip: str | None = None
) -> None:
    role = check_role(role)
    with db.atomic():
        row = _require(db, username)
        if row["role"] == role:
            raise AccountError(f"“{row['username']}” đã có vai trò này")
        if row["role"] == "admin" and not row["disabled"]:
            admins = db.execute(
                "SELECT COUNT(*) FROM operators WHERE role = 'admin' AND disabled = 0"
            ).fetchone()[0]
            if admins <= 1:
                raise AccountError("Không thể hạ vai trò của quản trị viên cuối cùng")
        db.execute(
            "UPDATE operators SET role = ?, updated_at = ? WHERE username = ?",
            [role, now_iso(), row["username"]],
        )
        audit(db, actor, "operator_role", row["username"], {"from": row["role"], "to": role}, ip)


# --- login and lockout ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    operator: dict[str, Any] | None = None
    locked_until: datetime | None = None
    message: str = ""


def _ensure_throttle(db: sqlite_utils.Database) -> None:
    # A database opened before this table existed (the schema is migrated at open; this
    # module may be imported after that).
    if not db.table(LOGIN_THROTTLE.name).exists():
        _ensure_table(db, LOGIN_THROTTLE)


def locked_until(
    db: sqlite_utils.Database,
    username: str,
    now: datetime | None = None,
    *,
    client: str | None = None,
) -> datetime | None:
    """Until when this name is locked for logins from this client address, if it is."""
    _ensure_throttle(db)
    now = now or datetime.now(UTC)
    rows = list(
        db.query(
            "SELECT locked_until FROM console_login_throttle WHERE username = ? AND client = ?",
            [clean_username(username), client or ""],
        )
    )
    until = _utc(rows[0]["locked_until"]) if rows else None
    return until if until and until > now else None


def authenticate(
    db: sqlite_utils.Database, username: str, password: str, *, ip: str | None = None
) -> LoginResult:
    """Check a login; counts failures per (name, client address) and locks that pair after
    MAX_FAILURES, for LOCKOUT doubled on each lockout in a row (at most MAX_LOCKOUT).

    While locked, even the right password is refused from that address (an attacker guessing
    learns nothing); the same name from another address is not affected."""
    name = clean_username(username)[:64]
    client = (ip or "")[:64]
    # Hashed as NFC at creation: a keyboard that sends decomposed Vietnamese still matches.
    password = unicodedata.normalize("NFC", password or "")
    now = datetime.now(UTC)
    until = locked_until(db, name, now, client=client)
    if until is not None:
        audit(db, name or "?", "login_locked", name, None, ip)
        return LoginResult(False, locked_until=until, message="locked")
    row = get_operator(db, name) if name else None
    ok = False
    try:
        ok = _hasher.verify(row["password_hash"] if row else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    key = [name, client]
    if ok and row is not None and not row["disabled"]:
        if _hasher.check_needs_rehash(row["password_hash"]):
            db.execute(
                "UPDATE operators SET password_hash = ? WHERE username = ?",
                [_hasher.hash(password), name],
            )
        db.execute("DELETE FROM console_login_throttle WHERE username = ? AND client = ?", key)
        db.execute("UPDATE operators SET last_login_at = ? WHERE username = ?", [now_iso(), name])
        return LoginResult(True, operator=row)
    prev = list(
        db.query(
            "SELECT failures, lockouts FROM console_login_throttle "
            "WHERE username = ? AND client = ?",
            key,
        )
    )
    failures = (prev[0]["failures"] or 0) + 1 if prev else 1
    lockouts = (prev[0]["lockouts"] or 0) if prev else 0
    locked = None
    if failures >= MAX_FAILURES:
        locked = now + min(LOCKOUT * (2 ** min(lockouts, 16)), MAX_LOCKOUT)
        failures = 0
        lockouts += 1
    db.table(LOGIN_THROTTLE.name).upsert(
        {
            "username": name,
            "client": client,
            "failures": failures,
            "lockouts": lockouts,
            "last_failed_at": _iso(now),
            "locked_until": _iso(locked) if locked else None,
        },
        pk=("username", "client"),
    )
    reason = "disabled" if ok and row is not None else "bad_credentials"
    audit(db, name or "?", "login_failed", name, {"reason": reason}, ip)
    if locked:
        audit(db, name or "?", "login_lockout", name, {"until": _iso(locked)}, ip)
    return LoginResult(False, locked_until=locked, message=reason)


# --- sessions ---------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_session(
    db: sqlite_utils.Database,
    username: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> str:
    """A new session for `username`; returns the cookie value (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    db.execute("DELETE FROM console_sessions WHERE expires_at < ?", [_iso(now)])
    db.table("console_sessions").insert(
        {
            "token_hash": token_hash(token),
            "username": clean_username(username),
            "csrf_token": secrets.token_urlsafe(32),
            "created_at": _iso(now),
            "last_seen_at": _iso(now),
            "expires_at": _iso(now + SESSION_TTL),
            "ip": ip,
            "user_agent": (user_agent or "")[:200],
        }
    )
    audit(db, clean_username(username), "login", clean_username(username), None, ip)
    return token


def session_operator(db: sqlite_utils.Database, token: str | None) -> Operator | None:
    """The operator a session cookie belongs to, or None (unknown, expired, idle or disabled).

    The role is read from the operators table on every request, so a changed role or a
    disabled account takes effect at once."""
    if not token or len(token) > 200:
        return None
    digest = token_hash(token)
    rows = list(
        db.query(
            "SELECT s.token_hash, s.csrf_token, s.expires_at, s.last_seen_at, o.username, o.role,"
            " o.display_name, o.disabled, o.agency_code FROM console_sessions s JOIN operators o"
            " ON o.username = s.username WHERE s.token_hash = ?",
            [digest],
        )
    )
    if not rows:
        return None
    row = rows[0]
    now = datetime.now(UTC)
    expires = _utc(row["expires_at"])
    seen = _utc(row["last_seen_at"]) or now
    if row["disabled"] or (expires and expires <= now) or now - seen > SESSION_IDLE:
        db.execute("DELETE FROM console_sessions WHERE token_hash = ?", [digest])
        return None
    if now - seen > TOUCH_EVERY:
        db.execute(
            "UPDATE console_sessions SET last_seen_at = ? WHERE token_hash = ?", [_iso(now), digest]
        )
    return Operator(
        username=row["username"],
        role=row["role"],
        display_name=row["display_name"] or "",
        csrf_token=row["csrf_token"],
        session_hash=digest,
        agency_code=row["agency_code"] or "",
    )


def end_session(db: sqlite_utils.Database, token: str | None, *, ip: str | None = None) -> None:
    if not token:
        return
    digest = token_hash(token)
    rows = list(db.query("SELECT username FROM console_sessions WHERE token_hash = ?", [digest]))
    db.execute("DELETE FROM console_sessions WHERE token_hash = ?", [digest])
    if rows:
        audit(db, rows[0]["username"], "logout", rows[0]["username"], None, ip)
