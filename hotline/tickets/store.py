"""Field-report tickets and their history, in the hotline's SQLite file.

A report starts as a *draft* (confirmed = 0, no code) as soon as the caller has said what is
wrong, so a caller who hangs up before confirming still leaves something an operator can see.
Confirming gives it a code (hotline.tickets.codes), an agency (hotline.tickets.routing) and
the status "mới". Every later change (status, comment, reassignment) adds a history row.

These are plain functions over a sqlite_utils.Database. Each one that writes more than one
row runs in `db.atomic()`: its own transaction, or a savepoint inside the caller's (the
service's Store serialises them and makes confirmations durable before a code is spoken).
All text is NFC-normalised on the way in.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlite_utils

from hotline.outbox import enqueue, status_message
from hotline.store import Table, now_iso, register_schema
from hotline.tickets import incidents
from hotline.tickets.codes import clean_code, is_valid, new_code
from hotline.tickets.routing import Router, fold, location_fields

TICKETS = Table(
    "tickets",
    {
        "id": int,
        "code": str,  # 7 digits with a Damm check digit; NULL while a draft
        "confirmed": int,  # 0 draft, 1 confirmed by the caller (or an operator)
        "category": str,  # the NLU intent (report_*), voice_message or keypad_report
        "agency_code": str,  # routing.yml agency code; templated ones carry the unit: ubnd_xa:19333
        "agency_name": str,
        "location_raw": str,  # the caller's words for the place
        "location_unit": str,  # normalised administrative unit name
        "location_code": str,  # its code in the national gazetteer
        "location_json": str,  # the whole normalised location
        "description": str,
        "caller": str,  # E.164; masked wherever many tickets are shown at once
        "call_sid": str,
        "recording_path": str,
        "status": str,  # NULL while a draft, then one of STATUSES
        "channel": str,  # voice | keypad | voice_message | console
        "created_at": str,
        "confirmed_at": str,
        "updated_at": str,
        "resolved_at": str,  # set on đã xử lý / từ chối, cleared on reopening
        "sms_sent_at": str,
        "priority": str,  # normal | urgent (filed during an emergency, or marked so)
        "incident_id": int,  # reports grouped as one incident (hotline/tickets/incidents.py)
        "rating": int,  # the resident's rating of the result: 1 satisfied, 0 not (latest)
        "rated_at": str,
        "due_at": str,  # deadline (call_flows/deadlines.yml, in working days) from confirmation
        "closed_at": str,  # a draft withdrawn by the caller (or closed by an operator)
        "close_reason": str,
    },
    pk="id",
    not_null=frozenset({"confirmed"}),
    defaults={"confirmed": 0},
    indexes=(
        ("status",),
        ("call_sid",),
        ("created_at",),
        ("agency_code",),
        ("confirmed",),
        ("due_at",),
    ),
    # SQLite lets many rows hold NULL under a unique index, so drafts need no code.
    unique_indexes=(("code",),),
)

TICKET_HISTORY = Table(
    "ticket_history",
    {
        "id": int,
        "ticket_id": int,
        "at": str,
        "actor": str,  # hotline, or the operator's name
        "action": str,  # created | confirmed | status | comment | assign
        "from_status": str,
        "to_status": str,
        "note": str,
        "detail": str,  # JSON: the code and agency on confirmation, old and new agency on assign
    },
    pk="id",
    indexes=(("ticket_id",),),
)

register_schema(TICKETS, TICKET_HISTORY)

NEW = "mới"
RECEIVED = "đã tiếp nhận"
IN_PROGRESS = "đang xử lý"
RESOLVED = "đã xử lý"
REJECTED = "từ chối"
STATUSES: tuple[str, ...] = (NEW, RECEIVED, IN_PROGRESS, RESOLVED, REJECTED)

# The lifecycle. A resolved ticket may be reopened (the fix did not hold); a rejection is final
# (a new report is the way back, so a rejected ticket's history stays readable).
TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({RECEIVED, REJECTED}),
    RECEIVED: frozenset({IN_PROGRESS, REJECTED}),
    IN_PROGRESS: frozenset({RESOLVED, REJECTED}),
    RESOLVED: frozenset({IN_PROGRESS}),
    REJECTED: frozenset(),
}
CLOSED = frozenset({RESOLVED, REJECTED})

STATUS_EN = {
    NEW: "new",
    RECEIVED: "received",
    IN_PROGRESS: "in progress",
    RESOLVED: "resolved",
    REJECTED: "rejected",
}
# Typed without diacritics (a terminal, a keyboard without Telex) or in English.
_STATUS_ALIASES = {
    **{fold(s): s for s in STATUSES},
    "new": NEW,
    "received": RECEIVED,
    "acknowledged": RECEIVED,
    "accepted": RECEIVED,
    "in progress": IN_PROGRESS,
    "processing": IN_PROGRESS,
    "resolved": RESOLVED,
    "done": RESOLVED,
    "rejected": REJECTED,
}

CHANNELS = frozenset({"voice", "keypad", "voice_message", "console", "portal"})  # portal: Open311
ACTIONS = ("created", "confirmed", "status", "comment", "assign", "cancelled", "rating")
PRIORITIES = frozenset({"normal", "urgent"})

# Fields a draft may change while the call goes on.
_DRAFT_FIELDS = frozenset(
    {
        "category",
        "description",
        "location_raw",
        "location",
        "recording_path",
        "channel",
        "caller",
        "call_sid",
        "priority",
    }
)

EXPORT_COLUMNS = (
    "id",
    "code",
    "confirmed",
    "status",
    "category",
    "agency_code",
    "agency_name",
    "location_raw",
    "location_unit",
    "location_code",
    "location_json",
    "description",
    "caller",
    "channel",
    "call_sid",
    "recording_path",
    "created_at",
    "confirmed_at",
    "updated_at",
    "resolved_at",
    "sms_sent_at",
    "latest_note",
)


class TicketError(Exception):
    """A refused ticket operation, explained in Vietnamese (for operators) and English (for logs).

    kind: not_found | invalid_code | bad_status | bad_transition | not_draft | bad_input
    """

    def __init__(self, kind: str, message_vi: str, message_en: str) -> None:
        super().__init__(f"{message_vi} ({message_en})")
        self.kind = kind
        self.message_vi = message_vi
        self.message_en = message_en


@dataclass(frozen=True)
class LookupResult:
    status: Literal["ok", "invalid_code", "not_found"]
    ticket: dict[str, Any] | None
    code: str  # the code as cleaned (digits only), for reading back


# --- helpers -------------------------------------------------------------------------------------


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    return value


def _nfc_deep(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        return {_nfc_deep(k): _nfc_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nfc_deep(v) for v in value]
    return value


def _location_columns(location: Mapping[str, Any] | None) -> dict[str, Any]:
    if not location:
        return {"location_unit": None, "location_code": None, "location_json": None}
    location = _nfc_deep(dict(location))
    unit, code = location_fields(location)
    return {
        "location_unit": unit,
        "location_code": code,
        "location_json": json.dumps(location, ensure_ascii=False, sort_keys=True),
    }


def parse_status(value: str) -> str:
    """'da xu ly', 'Đã xử lý', 'đã-xử-lý', 'resolved' -> 'đã xử lý'."""
    text = unicodedata.normalize("NFC", value or "").strip().casefold()
    text = " ".join(text.replace("-", " ").replace("_", " ").split())
    if text in STATUSES:
        return text
    # Compared without diacritics: the five statuses stay distinct that way ("da xu ly",
    # "dang xu ly"), and a half-accented spelling still means one of them.
    found = _STATUS_ALIASES.get(fold(text))
    if found is None:
        allowed = ", ".join(STATUSES)
        raise TicketError(
            "bad_status",
            f"Trạng thái không hợp lệ: “{value}”. Các trạng thái: {allowed}",
            f"unknown status {value!r}; use one of: {allowed} (diacritics optional)",
        )
    return found


def _history(
    db: sqlite_utils.Database,
    ticket_id: int,
    *,
    actor: str,
    action: str,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
    at: str | None = None,
) -> None:
    db.execute(
        "INSERT INTO ticket_history (ticket_id, at, actor, action, from_status, to_status, note, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ticket_id,
            at or now_iso(),
            actor,
            action,
            from_status,
            to_status,
            note,
            json.dumps(detail, ensure_ascii=False) if detail else None,
        ],
    )


def _row(db: sqlite_utils.Database, where: str, params: list[Any]) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT * FROM tickets WHERE {where}", params))
    return rows[0] if rows else None


def _with_history(db: sqlite_utils.Database, ticket: dict[str, Any]) -> dict[str, Any]:
    ticket["location"] = (
        json.loads(ticket["location_json"]) if ticket.get("location_json") else None
    )
    history = []
    for h in db.query(
        "SELECT id, at, actor, action, from_status, to_status, note, detail"
        " FROM ticket_history WHERE ticket_id = ? ORDER BY id",
        [ticket["id"]],
    ):
        h["detail"] = json.loads(h["detail"]) if h["detail"] else None
        history.append(h)
    ticket["history"] = history
    return ticket


def _due_at(router: Router | None, row: Mapping[str, Any], start: str) -> str | None:
    """When a ticket counted from `start` is due, by the deadlines that travel with the
    routing table (None without them)."""
    deadlines = getattr(router, "deadlines", None)
    return deadlines.due_at(row["category"], row.get("priority"), start) if deadlines else None


def _actor(actor: str | None) -> str:
    actor = _nfc(actor or "")
    if not actor:
        raise TicketError("bad_input", "Thiếu tên người thực hiện", "actor is required")
    return actor


def _require(db: sqlite_utils.Database, code: str) -> dict[str, Any]:
    cleaned = clean_code(code)
    if not is_valid(cleaned):
        raise TicketError(
            "invalid_code",
            f"Mã phiếu “{code}” không hợp lệ (sai số kiểm tra hoặc không đủ 7 chữ số)",
            f"ticket code {code!r} is invalid (7 digits with a check digit expected)",
        )
    row = _row(db, "code = ? AND confirmed = 1", [cleaned])
    if row is None:
        raise TicketError(
            "not_found",
            f"Không tìm thấy phiếu có mã {cleaned}",
            f"no ticket with code {cleaned}",
        )
    return row


# --- drafts and confirmation ------------------------------------------------------------------------


def create_draft(
    db: sqlite_utils.Database,
    *,
    call_sid: str | None,
    caller: str | None,
    category: str | None,
    description: str | None,
    location_raw: str | None = None,
    location: Mapping[str, Any] | None = None,
    recording_path: str | None = None,
    channel: str = "voice",
    priority: str = "normal",
    actor: str = "hotline",
) -> int:
    """A draft report (no code yet); returns its id. A 'created' history row records it."""
    if priority not in PRIORITIES:
        raise TicketError("bad_input", "Mức ưu tiên không hợp lệ", f"unknown priority {priority!r}")
    if channel not in CHANNELS:
        raise TicketError(
            "bad_input",
            f"Kênh không hợp lệ: {channel}",
            f"unknown channel {channel!r}; use one of {sorted(CHANNELS)}",
        )
    now = now_iso()
    row = {
        "confirmed": 0,
        "category": _nfc(category),
        "description": _nfc(description),
        "location_raw": _nfc(location_raw),
        **_location_columns(location),
        "caller": _nfc(caller),
        "call_sid": _nfc(call_sid),
        "recording_path": str(recording_path) if recording_path else None,
        "channel": channel,
        "priority": priority,
        "created_at": now,
        "updated_at": now,
    }
    with db.atomic():
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cursor = db.execute(f"INSERT INTO tickets ({cols}) VALUES ({marks})", list(row.values()))
        ticket_id = int(cursor.lastrowid)  # type: ignore[arg-type]
        _history(
            db,
            ticket_id,
            actor=_actor(actor),
            action="created",
            detail={"channel": channel},
            at=now,
        )
    return ticket_id


def update_draft(db: sqlite_utils.Database, ticket_id: int, **fields: Any) -> None:
    """Change a draft while the call goes on (the description, the place once asked for...).

    Draft edits add no history row: the call's turns already record what was said, and the
    'confirmed' row captures the state the caller agreed to."""
    unknown = set(fields) - _DRAFT_FIELDS
    if unknown:
        raise TypeError(
            f"update_draft: unknown field(s) {sorted(unknown)}; allowed: {sorted(_DRAFT_FIELDS)}"
        )
    if "priority" in fields and fields["priority"] not in PRIORITIES:
        raise TicketError("bad_input", "Mức ưu tiên không hợp lệ", f"{fields['priority']!r}")
    if "channel" in fields and fields["channel"] not in CHANNELS:
        raise TicketError(
            "bad_input", "Kênh không hợp lệ", f"unknown channel {fields['channel']!r}"
        )
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "location":
            values.update(_location_columns(value))
        elif key == "recording_path":
            values[key] = str(value) if value else None
        else:
            values[key] = _nfc(value)
    values["updated_at"] = now_iso()
    with db.atomic():
        row = _row(db, "id = ?", [ticket_id])
        if row is None:
            raise TicketError(
                "not_found", f"Không có phiếu nháp số {ticket_id}", f"no ticket with id {ticket_id}"
            )
        if row["confirmed"]:
            raise TicketError(
                "not_draft",
                f"Phiếu {row['code']} đã được xác nhận, không sửa như bản nháp được",
                f"ticket {row['code']} is already confirmed; it is no longer a draft",
            )
        sets = ", ".join(f"{k} = ?" for k in values)
        db.execute(f"UPDATE tickets SET {sets} WHERE id = ?", [*values.values(), ticket_id])


def cancel_draft(
    db: sqlite_utils.Database, ticket_id: int, *, reason: str, actor: str = "hotline"
) -> None:
    """The caller withdrew a draft. It stays in the drafts list, marked cancelled (closed_at,
    a 'cancelled' history row), so operators still see what was said; an operator's
    `close_draft` is what takes a draft off the list."""
    with db.atomic():
        _require_open_draft(db, ticket_id)
        now = now_iso()
        db.execute(
            "UPDATE tickets SET closed_at = ?, close_reason = ?, updated_at = ? WHERE id = ?",
            [now, _nfc(reason), now, ticket_id],
        )
        _history(db, ticket_id, actor=_actor(actor), action="cancelled", note=_nfc(reason), at=now)


def confirm_ticket(
    db: sqlite_utils.Database,
    ticket_id: int,
    router: Router,
    actor: str = "hotline",
    *,
    incident_window: timedelta | None = None,
) -> dict[str, Any]:
    """Give a draft its code and agency and the status 'mới'; returns the ticket.

    Idempotent: confirming a confirmed ticket returns it unchanged (same code), so a retried
    confirmation never issues a second code."""
    with db.atomic():
        row = _row(db, "id = ?", [ticket_id])
        if row is None:
            raise TicketError(
                "not_found", f"Không có phiếu số {ticket_id}", f"no ticket with id {ticket_id}"
            )
        if row["confirmed"]:
            return _with_history(db, row)
        location = json.loads(row["location_json"]) if row["location_json"] else None
        if row["agency_code"]:
            # An operator may have assigned the draft already; keep their choice.
            agency_code, agency_name = row["agency_code"], row["agency_name"]
        else:
            agency = router.route(row["category"], location, row["description"] or "")
            agency_code, agency_name = agency.code, agency.name

        def exists(code: str) -> bool:
            return bool(db.execute("SELECT 1 FROM tickets WHERE code = ?", [code]).fetchone())

        now = now_iso()
        due_at = _due_at(router, row, now)
        for _attempt in range(5):
            code = new_code(exists)
            try:
                db.execute(
                    "UPDATE tickets SET code = ?, confirmed = 1, status = ?, agency_code = ?,"
                    " agency_name = ?, confirmed_at = ?, updated_at = ?, due_at = ? WHERE id = ?",
                    [code, NEW, agency_code, agency_name, now, now, due_at, ticket_id],
                )
                break
            except sqlite3.IntegrityError:
                # Another writer took the code between the check and the update.
                continue
        else:
            raise RuntimeError("could not store a unique ticket code")
        _history(
            db,
            ticket_id,
            actor=_actor(actor),
            action="confirmed",
            to_status=NEW,
            detail={"code": code, "agency_code": agency_code, "agency_name": agency_name},
            at=now,
        )
        row = _row(db, "id = ?", [ticket_id])
        assert row is not None
        incident = incidents.attach(db, row, window=incident_window or incidents.DEFAULT_WINDOW)
        row = _row(db, "id = ?", [ticket_id])
        assert row is not None
        ticket = _with_history(db, row)
        ticket["incident_reports"] = incident["reports"] if incident else 1
        return ticket


def mark_sms_sent(db: sqlite_utils.Database, ticket_id: int, at: str | None = None) -> None:
    db.execute("UPDATE tickets SET sms_sent_at = ? WHERE id = ?", [at or now_iso(), ticket_id])


def set_recording_path(db: sqlite_utils.Database, ticket_id: int, path: str | None) -> None:
    """The call's recording is finished after the ticket is confirmed; link it then."""
    db.execute(
        "UPDATE tickets SET recording_path = ? WHERE id = ?",
        [str(path) if path else None, ticket_id],
    )


# --- reading ------------------------------------------------------------------------------------------


def get_ticket(db: sqlite_utils.Database, code: str) -> dict[str, Any] | None:
    """A confirmed ticket with its history, or None. Spaces and dashes in the code are fine;
    a code failing its check digit returns None without touching the database."""
    cleaned = clean_code(code)
    if not is_valid(cleaned):
        return None
    row = _row(db, "code = ? AND confirmed = 1", [cleaned])
    return _with_history(db, row) if row else None


def require_ticket(db: sqlite_utils.Database, code: str) -> dict[str, Any]:
    """Like get_ticket, but raises TicketError (invalid_code or not_found) instead of None."""
    return _with_history(db, _require(db, code))


def get_ticket_by_id(db: sqlite_utils.Database, ticket_id: int) -> dict[str, Any] | None:
    """Any ticket, drafts included, with its history."""
    row = _row(db, "id = ?", [ticket_id])
    return _with_history(db, row) if row else None


def lookup_ticket(db: sqlite_utils.Database, code: str) -> LookupResult:
    """For the caller's status enquiry: tells a misheard code (invalid_code, ask again) from a
    well-formed code nobody was given (not_found)."""
    cleaned = clean_code(code)
    if not is_valid(cleaned):
        return LookupResult("invalid_code", None, cleaned)
    ticket = get_ticket(db, cleaned)
    return LookupResult("ok" if ticket else "not_found", ticket, cleaned)


def list_tickets(
    db: sqlite_utils.Database,
    *,
    status: str | None = None,
    category: str | None = None,
    agency: str | None = None,
    confirmed: bool | None = True,
    overdue: bool = False,
    now: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first (most overdue first with `overdue`). `agency` matches the code exactly or,
    for a templated agency, all its units ('ubnd_xa' lists ubnd_xa:19333 and the rest).
    confirmed=None lists drafts too. `overdue`: open tickets past their due time."""
    where: list[str] = []
    params: list[Any] = []
    if overdue:
        marks = ", ".join("?" for _ in CLOSED)
        where.append(f"due_at IS NOT NULL AND due_at < ? AND status NOT IN ({marks})")
        params += [now or now_iso(), *sorted(CLOSED)]
    if confirmed is not None:
        where.append("confirmed = ?")
        params.append(1 if confirmed else 0)
    if status:
        where.append("status = ?")
        params.append(parse_status(status))
    if category:
        where.append("category = ?")
        params.append(_nfc(category))
    if agency:
        where.append("(agency_code = ? OR substr(agency_code, 1, ?) = ?)")
        params += [agency, len(agency) + 1, agency + ":"]
    sql = "SELECT * FROM tickets"
    if where:
        sql += " WHERE " + " AND ".join(where)
    order = "due_at ASC" if overdue else "COALESCE(confirmed_at, created_at) DESC"
    sql += f" ORDER BY {order}, id DESC LIMIT ?"
    params.append(int(limit))
    return list(db.query(sql, params))


def list_drafts(db: sqlite_utils.Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """Unconfirmed reports (the caller hung up before confirming, or is still on the line)."""
    return list_tickets(db, confirmed=False, limit=limit)


# --- operators' changes --------------------------------------------------------------------------------


def set_status(
    db: sqlite_utils.Database,
    code: str,
    status: str,
    *,
    note: str | None = None,
    actor: str,
    notify: bool = True,
) -> dict[str, Any]:
    """Move a ticket along its lifecycle; returns the ticket. The note of a status change is
    what a caller asking about the ticket hears (latest_note), so write it for them.
    A rejection needs a note: a caller must not be told "từ chối" without a reason."""
    target = parse_status(status)
    note = _nfc(note) or None
    actor = _actor(actor)
    with db.atomic():
        row = _require(db, code)
        current = row["status"]
        allowed = TRANSITIONS.get(current, frozenset())
        if target == current:
            raise TicketError(
                "bad_transition",
                f"Phiếu {row['code']} đã ở trạng thái “{current}”",
                f"ticket {row['code']} is already {STATUS_EN.get(current, current)!r}",
            )
        if target not in allowed:
            options = (
                ", ".join(f"“{s}”" for s in STATUSES if s in allowed)
                or "không có (trạng thái cuối)"
            )
            options_en = ", ".join(STATUS_EN[s] for s in STATUSES if s in allowed) or "none (final)"
            raise TicketError(
                "bad_transition",
                f"Không thể chuyển phiếu {row['code']} từ “{current}” sang “{target}”. Có thể chuyển sang: {options}",
                f"cannot move ticket {row['code']} from {STATUS_EN.get(current, current)!r} to "
                f"{STATUS_EN[target]!r}; allowed: {options_en}",
            )
        if target == REJECTED and not note:
            raise TicketError(
                "bad_input",
                "Từ chối phiếu cần ghi rõ lý do (--note)",
                "rejecting a ticket needs a note giving the reason",
            )
        now = now_iso()
        resolved_at = now if target in CLOSED else None
        db.execute(
            "UPDATE tickets SET status = ?, updated_at = ?, resolved_at = ? WHERE id = ?",
            [target, now, resolved_at, row["id"]],
        )
        _history(
            db,
            row["id"],
            actor=actor,
            action="status",
            from_status=current,
            to_status=target,
            note=note,
            at=now,
        )
        # The resident hears of it: queued in this transaction, sent by the outbox worker.
        body = status_message(row, target, note) if notify else None
        if body:
            enqueue(db, ticket_id=row["id"], to=row["caller"], body=body, reason=f"status:{target}")
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def rate_ticket(
    db: sqlite_utils.Database,
    code: str,
    *,
    satisfied: bool,
    comment: str | None = None,
    router: Router | None = None,
    actor: str = "người gọi",
) -> dict[str, Any]:
    """The resident's verdict on a resolved ticket. "Chưa hài lòng" re-opens it (đã xử lý ->
    đang xử lý) with their words as a comment, and its deadline starts again."""
    comment = _nfc(comment) or None
    with db.atomic():
        row = _require(db, code)
        if row["status"] != RESOLVED:
            raise TicketError(
                "bad_transition",
                f"Phiếu {row['code']} chưa xử lý xong, chưa đánh giá được",
                f"ticket {row['code']} is {STATUS_EN.get(row['status'], row['status'])!r}, not resolved",
            )
        now = now_iso()
        db.execute(
            "UPDATE tickets SET rating = ?, rated_at = ?, updated_at = ? WHERE id = ?",
            [1 if satisfied else 0, now, now, row["id"]],
        )
        _history(
            db,
            row["id"],
            actor=actor,
            action="rating",
            note=comment,
            detail={"satisfied": satisfied},
            at=now,
        )
        if not satisfied:
            due = _due_at(router, row, now)
            db.execute(
                "UPDATE tickets SET status = ?, resolved_at = NULL, due_at = COALESCE(?, due_at)"
                " WHERE id = ?",
                [IN_PROGRESS, due, row["id"]],
            )
            _history(
                db,
                row["id"],
                actor=actor,
                action="status",
                from_status=RESOLVED,
                to_status=IN_PROGRESS,
                note="Người phản ánh chưa hài lòng, mở lại" + (f": {comment}" if comment else ""),
                at=now,
            )
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def add_comment(db: sqlite_utils.Database, code: str, note: str, *, actor: str) -> dict[str, Any]:
    """An operators' note. Comments are internal: they are not read to callers."""
    note = _nfc(note)
    if not note:
        raise TicketError("bad_input", "Nội dung ghi chú trống", "empty comment")
    actor = _actor(actor)
    with db.atomic():
        row = _require(db, code)
        now = now_iso()
        db.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", [now, row["id"]])
        _history(db, row["id"], actor=actor, action="comment", note=note, at=now)
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def assign_agency(
    db: sqlite_utils.Database,
    code: str,
    agency_code: str,
    agency_name: str,
    *,
    actor: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Hand a ticket to another agency (routing got it wrong, or the agency passed it on)."""
    agency_code = _nfc(agency_code)
    agency_name = _nfc(agency_name)
    if not agency_code or not agency_name:
        raise TicketError(
            "bad_input", "Thiếu mã hoặc tên cơ quan", "agency code and name are required"
        )
    actor = _actor(actor)
    with db.atomic():
        row = _require(db, code)
        if row["agency_code"] == agency_code and row["agency_name"] == agency_name:
            raise TicketError(
                "bad_input",
                f"Phiếu {row['code']} đã được giao cho {agency_name}",
                f"ticket {row['code']} is already assigned to {agency_code}",
            )
        now = now_iso()
        db.execute(
            "UPDATE tickets SET agency_code = ?, agency_name = ?, updated_at = ? WHERE id = ?",
            [agency_code, agency_name, now, row["id"]],
        )
        _history(
            db,
            row["id"],
            actor=actor,
            action="assign",
            note=_nfc(note) or None,
            detail={
                "from": {"code": row["agency_code"], "name": row["agency_name"]},
                "to": {"code": agency_code, "name": agency_name},
            },
            at=now,
        )
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def latest_note(ticket: Mapping[str, Any], *, include_comments: bool = False) -> str | None:
    """The newest note a caller may hear: the note of the latest status change that has one.

    Comments stay internal unless include_comments is set."""
    actions = {"status", "comment"} if include_comments else {"status"}
    for h in reversed(ticket.get("history") or []):
        if h.get("action") in actions and h.get("note"):
            return h["note"]
    return None


# --- export ---------------------------------------------------------------------------------------------


def export_rows(db: sqlite_utils.Database, *, include_drafts: bool = False) -> list[dict[str, Any]]:
    """Every ticket as a flat row (EXPORT_COLUMNS), oldest first, full caller numbers:
    the export is an operators' tool."""
    sql = (
        "SELECT t.*, (SELECT h.note FROM ticket_history h WHERE h.ticket_id = t.id"
        " AND h.action = 'status' AND h.note IS NOT NULL AND h.note != ''"
        " ORDER BY h.id DESC LIMIT 1) AS latest_note FROM tickets t"
    )
    if not include_drafts:
        sql += " WHERE t.confirmed = 1"
    sql += " ORDER BY t.id"
    return [{col: row.get(col) for col in EXPORT_COLUMNS} for row in db.query(sql)]


# --- operators' work on categories and drafts ---------------------------------------------------

TEST_AGENCY_CODE = "test"
TEST_AGENCY_NAME = "Không giao cơ quan (cuộc gọi thử)"


def _by_code_or_id(db: sqlite_utils.Database, ref: str | int) -> dict[str, Any]:
    if isinstance(ref, int):
        row = _row(db, "id = ?", [ref])
        if row is None:
            raise TicketError("not_found", f"Không có phiếu số {ref}", f"no ticket with id {ref}")
        return row
    return _require(db, ref)


def change_category(
    db: sqlite_utils.Database,
    ref: str | int,
    category: str,
    router: Router | None,
    *,
    actor: str,
    note: str | None = None,
    is_test: bool = False,
) -> dict[str, Any]:
    """Give a ticket (code) or draft (id) another category, and route it again.

    A confirmed ticket goes to the agency the routing table names for the new category and its
    place, recorded in one 'category' history row with the old and new category and agency. A
    draft keeps no agency until it is confirmed. A test call's ticket is never routed."""
    category = _nfc(category)
    if not category:
        raise TicketError("bad_input", "Hãy chọn lĩnh vực", "category is required")
    actor = _actor(actor)
    with db.atomic():
        row = _by_code_or_id(db, ref)
        if row["category"] == category:
            raise TicketError(
                "bad_input",
                "Phiếu đã ở lĩnh vực này",
                f"ticket {row['code'] or row['id']} already has category {category}",
            )
        agency_code, agency_name = row["agency_code"], row["agency_name"]
        if row["confirmed"]:
            if is_test:
                agency_code, agency_name = TEST_AGENCY_CODE, TEST_AGENCY_NAME
            elif router is not None:
                location = json.loads(row["location_json"]) if row["location_json"] else None
                agency = router.route(category, location, row["description"] or "")
                agency_code, agency_name = agency.code, agency.name
        now = now_iso()
        db.execute(
            "UPDATE tickets SET category = ?, agency_code = ?, agency_name = ?, updated_at = ?"
            " WHERE id = ?",
            [category, agency_code, agency_name, now, row["id"]],
        )
        _history(
            db,
            row["id"],
            actor=actor,
            action="category",
            note=_nfc(note) or None,
            detail={
                "from": row["category"],
                "to": category,
                "agency_from": {"code": row["agency_code"], "name": row["agency_name"]},
                "agency_to": {"code": agency_code, "name": agency_name},
            },
            at=now,
        )
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def _require_open_draft(db: sqlite_utils.Database, ticket_id: int) -> dict[str, Any]:
    row = _by_code_or_id(db, ticket_id)
    if row["confirmed"]:
        raise TicketError(
            "not_draft",
            f"Phiếu {row['code']} đã được xác nhận",
            f"ticket {row['code']} is already confirmed",
        )
    if row["status"]:
        raise TicketError(
            "not_draft", "Phiếu nháp này đã đóng", f"draft {ticket_id} is already closed"
        )
    return row


def close_draft(
    db: sqlite_utils.Database, ticket_id: int, reason: str, *, actor: str
) -> dict[str, Any]:
    """An operator closes a draft nobody will confirm (a prank, a duplicate, solved by phone).
    It takes the status 'từ chối' without a code, so it leaves the drafts list; the reason is
    the history row's note."""
    reason = _nfc(reason)
    if not reason:
        raise TicketError("bad_input", "Hãy ghi lý do đóng phiếu nháp", "a reason is required")
    actor = _actor(actor)
    with db.atomic():
        row = _require_open_draft(db, ticket_id)
        now = now_iso()
        db.execute(
            "UPDATE tickets SET status = ?, resolved_at = ?, updated_at = ? WHERE id = ?",
            [REJECTED, now, now, row["id"]],
        )
        _history(
            db, row["id"], actor=actor, action="closed", to_status=REJECTED, note=reason, at=now
        )
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def record_callback(
    db: sqlite_utils.Database, ticket_id: int, *, actor: str, note: str | None = None
) -> dict[str, Any]:
    """An operator revealed the caller's number to call them back: a 'callback' history row."""
    actor = _actor(actor)
    with db.atomic():
        row = _by_code_or_id(db, ticket_id)
        now = now_iso()
        _history(db, row["id"], actor=actor, action="callback", note=_nfc(note) or None, at=now)
        return _with_history(db, _row(db, "id = ?", [row["id"]]))  # type: ignore[arg-type]


def confirm_draft_by_operator(
    db: sqlite_utils.Database,
    ticket_id: int,
    router: Router,
    *,
    actor: str,
    is_test: bool = False,
) -> dict[str, Any]:
    """'Tạo phiếu' on a draft: the operator confirms it in the caller's place. A test call's
    draft gets a code but no agency."""
    with db.atomic():
        _require_open_draft(db, ticket_id)
        if is_test:
            db.execute(
                "UPDATE tickets SET agency_code = ?, agency_name = ? WHERE id = ?",
                [TEST_AGENCY_CODE, TEST_AGENCY_NAME, ticket_id],
            )
        return confirm_ticket(db, ticket_id, router, actor=_actor(actor))
