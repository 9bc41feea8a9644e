"""Console tables (operators, sessions, login failures, audit log, NLU corrections) and the
small functions that write them.

Sessions are stored by the SHA-256 of their token, never the token itself: a copy of the
database does not let anyone sign in as an operator. Lockout state is kept per username (also
for names that do not exist, so a lockout does not reveal which accounts are real).
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from hotline.store import Table, now_iso, register_schema

OPERATORS = Table(
    "operators",
    {
        "username": str,  # ascii, lowercase: what they type at the login page
        "display_name": str,
        "role": str,  # operator | supervisor | admin, or agency (outside the ladder)
        "agency_code": str,  # an agency account's agency (routing.yml code, ubnd_xa:19333 too)
        "password_hash": str,  # argon2id
        "disabled": int,
        "created_at": str,
        "updated_at": str,
        "password_changed_at": str,
        "last_login_at": str,
    },
    pk="username",
    not_null=frozenset({"disabled"}),
    defaults={"disabled": 0},
)

SESSIONS = Table(
    "console_sessions",
    {
        "token_hash": str,  # sha256 hex of the cookie value
        "username": str,
        "csrf_token": str,  # put in every form of this session
        "created_at": str,
        "last_seen_at": str,
        "expires_at": str,
        "ip": str,
        "user_agent": str,
    },
    pk="token_hash",
    indexes=(("username",), ("expires_at",)),
)

LOGIN_FAILURES = Table(
    "console_login_failures",
    {
        "username": str,
        "failures": int,  # consecutive failures since the last success or lockout
        "last_failed_at": str,
        "locked_until": str,
    },
    pk="username",
)

AUDIT = Table(
    "audit_log",
    {
        "id": int,
        "at": str,
        "actor": str,  # operator username, or cli:<os user>
        "action": str,  # login, login_failed, ticket_status, nlu_correction, operator_add, ...
        "target": str,  # what was changed: a ticket code, a turn id, a username
        "detail": str,  # JSON
        "ip": str,
    },
    pk="id",
    indexes=(("at",), ("actor",), ("action",)),
)

CORRECTIONS = Table(
    "nlu_corrections",
    {
        "id": int,
        "turn_id": int,
        "call_sid": str,
        "text": str,  # the caller's words as recognised (what Rasa was given)
        "original_intent": str,
        "original_confidence": float,
        "corrected_intent": str,
        "location": str,  # the span of `text` naming the place, if the operator gave one
        "actor": str,
        "at": str,
    },
    pk="id",
    indexes=(("turn_id",), ("corrected_intent",), ("at",)),
)

# What operators usually tell callers at each status: supervisors edit them; the ticket page
# offers them to fill the status note (which is read aloud to callers asking about a ticket).
STATUS_TEMPLATES = Table(
    "status_templates",
    {"status": str, "text": str, "updated_by": str, "updated_at": str},
    pk="status",
)

register_schema(OPERATORS, SESSIONS, LOGIN_FAILURES, AUDIT, CORRECTIONS, STATUS_TEMPLATES)

DEFAULT_TEMPLATES: dict[str, str] = {
    "đã tiếp nhận": "Phản ánh của quý vị đã được tiếp nhận và chuyển tới cơ quan phụ trách.",
    "đang xử lý": "Cơ quan phụ trách đang xử lý phản ánh của quý vị.",
    "đã xử lý": "Phản ánh của quý vị đã được xử lý xong. Cảm ơn quý vị đã báo tin.",
    "từ chối": "Phản ánh không thuộc phạm vi tiếp nhận của đường dây nóng.",
}
MAX_TEMPLATE = 500


def status_templates(db: sqlite_utils.Database) -> dict[str, str]:
    """Every status's template: the supervisors' text, else the default."""
    saved = {r["status"]: r["text"] for r in db.query("SELECT status, text FROM status_templates")}
    return {k: saved.get(k, v) for k, v in DEFAULT_TEMPLATES.items() if saved.get(k, v)}


def set_status_template(db: sqlite_utils.Database, status: str, text: str, actor: str) -> None:
    import unicodedata

    if status not in DEFAULT_TEMPLATES:
        raise ValueError("Trạng thái không có mẫu câu")
    text = " ".join(unicodedata.normalize("NFC", text or "").split())
    if len(text) > MAX_TEMPLATE:
        raise ValueError(f"Mẫu câu dài quá {MAX_TEMPLATE} ký tự")
    db.execute(
        "INSERT INTO status_templates (status, text, updated_by, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(status) DO UPDATE SET text = excluded.text,"
        " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        [status, text, actor, now_iso()],
    )


ROLES: tuple[str, ...] = ("operator", "supervisor", "admin")
ROLE_LABELS = {
    "operator": "Điều hành viên",
    "supervisor": "Giám sát viên",
    "admin": "Quản trị viên",
    "agency": "Cán bộ cơ quan xử lý",
}
# An agency account (a commune's People's Committee, the power company) is outside the ladder:
# it passes no role check of the centre's pages and sees only its own agency's tickets.
AGENCY = "agency"


def role_at_least(role: str | None, minimum: str) -> bool:
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(minimum)


# Permissions beyond the role ladder, each granted from a minimum role up.
PERMISSIONS = {
    "privacy": "supervisor",  # data-subject requests: find, export, erase (PRIVACY.md)
    "reveal_number": "supervisor",  # show a full caller number: a logged click
    "audit": "admin",
}


def can(role: str | None, permission: str) -> bool:
    return role_at_least(role, PERMISSIONS[permission])


def audit(
    db: sqlite_utils.Database,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    db.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)",
        [
            now_iso(),
            actor,
            action,
            target,
            json.dumps(detail, ensure_ascii=False) if detail else None,
            ip,
        ],
    )


def list_audit(
    db: sqlite_utils.Database,
    *,
    limit: int = 200,
    actor: str | None = None,
    actions: tuple[str, ...] = (),
    target: str | None = None,
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM audit_log"
    where: list[str] = []
    params: list[Any] = []
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if actions:
        where.append(f"action IN ({','.join('?' for _ in actions)})")
        params.extend(actions)
    if target:
        where.append("target = ?")
        params.append(target)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    rows = list(db.query(sql, params))
    for r in rows:
        r["detail"] = json.loads(r["detail"]) if r.get("detail") else None
    return rows
