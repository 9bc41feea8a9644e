"""Call records: calls, their turns (who said what, when) and events (what happened)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

import sqlite_utils

from hotline.store import Table, now_iso, register_schema

CALLS = Table(
    "calls",
    {
        "call_sid": str,
        "account_sid": str,
        "stream_sid": str,
        "caller": str,  # E.164 as Twilio gives it; shown masked unless the role may see it
        "caller_hash": str,  # groups calls from one number without revealing it
        "called": str,
        "started_at": str,
        "answered_at": str,
        "ended_at": str,
        "duration_s": float,
        "status": str,  # Twilio's CallStatus: ringing, in-progress, completed, busy, ...
        "outcome": str,  # what the call achieved: ticket, answered, transferred, abandoned, ...
        "hangup_reason": str,  # stop, socket_closed, bot_hangup, transfer, shutdown, ...
        "asr_engine": str,
        "recording_path": str,  # caller audio (mono WAV, 8 kHz)
        "bot_recording_path": str,  # what the bot played, on the same timeline
        "mixed_recording_path": str,  # stereo: caller left, bot right
        "flow_path": str,  # JSON list of flow states visited
        "last_intent": str,
        "ticket_code": str,
        "updated_at": str,
    },
    pk="call_sid",
    indexes=(("started_at",), ("caller_hash",), ("outcome",)),
)

TURNS = Table(
    "turns",
    {
        "id": int,
        "call_sid": str,
        "seq": int,
        "speaker": str,  # caller | bot
        "kind": str,  # speech | dtmf | prompt
        "text": str,
        "start_ms": int,  # on the call's audio timeline (caller track)
        "end_ms": int,
        "asr_confidence": float,
        "words": str,  # JSON: per-word confidences where the engine gives them
        "intent": str,
        "intent_confidence": float,
        "entities": str,  # JSON
        "state": str,  # flow state the turn was taken in
        "interrupted": int,  # bot prompts cut by barge-in
        "created_at": str,
    },
    pk="id",
    indexes=(("call_sid", "seq"),),
)

EVENTS = Table(
    "events",
    {
        "id": int,
        "call_sid": str,
        "at": str,
        "call_ms": int,
        "kind": str,
        "detail": str,  # JSON
    },
    pk="id",
    indexes=(("call_sid",), ("kind",)),
)

register_schema(CALLS, TURNS, EVENTS)

FINAL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
MAX_REPEAT_EVENTS = 10  # events kept for a webhook repeated for one call

_DIGITS = re.compile(r"\d")


def mask_number(number: str | None) -> str:
    """'+84905123456' -> '+84905***456': enough to tell calls apart, not to call back."""
    if not number:
        return ""
    digits = [m.start() for m in _DIGITS.finditer(number)]
    if len(digits) <= 6:
        return "*" * len(number)
    hide = digits[-6:-3]
    return "".join("*" if i in hide else ch for i, ch in enumerate(number))


def caller_hash(number: str, secret: str) -> str:
    if not number:
        return ""
    return hmac.new(secret.encode(), number.encode(), hashlib.sha256).hexdigest()[:16]


def upsert_call(db: sqlite_utils.Database, call_sid: str, **fields: Any) -> None:
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["updated_at"] = now_iso()
    table = db.table("calls")
    if table.count_where("call_sid = ?", [call_sid]):
        table.update(call_sid, fields)
    else:
        fields.setdefault("started_at", fields["updated_at"])
        table.insert({"call_sid": call_sid, **fields})


def ring_call(
    db: sqlite_utils.Database,
    call_sid: str,
    *,
    caller: str,
    caller_hash: str,
    called: str,
    account_sid: str,
) -> str:
    """Record a call's (signed) voice webhook, once per CallSid.

    Returns "new" for a first webhook, "ringing" for a repeat while the call still waits for
    its stream, else the status the call has reached: a replayed webhook never resets a call.
    """
    rows = list(db.query("SELECT status, stream_sid FROM calls WHERE call_sid = ?", [call_sid]))
    if not rows:
        upsert_call(
            db,
            call_sid,
            account_sid=account_sid,
            caller=caller,
            caller_hash=caller_hash,
            called=called,
            status="ringing",
            started_at=now_iso(),
        )
        add_event(db, call_sid, "voice_webhook")
        return "new"
    status = rows[0]["status"] or ""
    waiting = status not in FINAL_STATUSES and not rows[0]["stream_sid"]
    state = "ringing" if waiting else status or "unknown"
    # A signed request can be replayed byte for byte (Twilio signs no timestamp): note the
    # first repeats, not every one, so replays cannot grow the database.
    if (
        db.table("events").count_where(
            "call_sid = ? AND kind = 'voice_webhook_repeated'", [call_sid]
        )
        < MAX_REPEAT_EVENTS
    ):
        add_event(db, call_sid, "voice_webhook_repeated", status=status)
    return state


def claim_stream(
    db: sqlite_utils.Database, call_sid: str, stream_sid: str
) -> dict[str, Any] | None:
    """Bind a stream to its call, once: the call's record if this stream won it.

    The call must not have ended and must have no stream yet ("ringing" for us; Twilio's own
    `answered` status callback may already have called it in-progress)."""
    now = now_iso()
    final = sorted(FINAL_STATUSES)
    marks = ",".join("?" * len(final))
    cur = db.execute(
        "UPDATE calls SET stream_sid = ?, status = 'in-progress', answered_at = ?, updated_at = ?"
        f" WHERE call_sid = ? AND COALESCE(status, '') NOT IN ({marks})"
        " AND COALESCE(stream_sid, '') = ''",
        [stream_sid, now, now, call_sid, *final],
    )
    if cur.rowcount != 1:
        return None
    return next(iter(db.query("SELECT * FROM calls WHERE call_sid = ?", [call_sid])))


def add_event(
    db: sqlite_utils.Database, call_sid: str, kind: str, call_ms: int | None = None, **detail: Any
) -> None:
    db.table("events").insert(
        {
            "call_sid": call_sid,
            "at": now_iso(),
            "call_ms": call_ms,
            "kind": kind,
            "detail": json.dumps(detail, ensure_ascii=False) if detail else None,
        }
    )


def _turn_columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Turn fields as stored: words and entities as JSON text."""
    row = dict(fields)
    for key in ("words", "entities"):
        if key in row and not isinstance(row[key], str | None):
            row[key] = json.dumps(row[key], ensure_ascii=False)
    return row


def add_turn(db: sqlite_utils.Database, call_sid: str, **fields: Any) -> int:
    seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE call_sid = ?", [call_sid])
    row = {"call_sid": call_sid, "seq": seq.fetchone()[0], "created_at": now_iso(), **fields}
    return db.table("turns").insert(_turn_columns(row)).last_pk  # type: ignore[return-value]


def update_turn(db: sqlite_utils.Database, turn_id: int, **fields: Any) -> None:
    db.table("turns").update(turn_id, _turn_columns(fields))


def get_call(db: sqlite_utils.Database, call_sid: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM calls WHERE call_sid = ?", [call_sid]))
    if not rows:
        return None
    call = rows[0]
    call["flow_path"] = json.loads(call["flow_path"]) if call.get("flow_path") else []
    call["turns"] = [
        _decode(t, "words", "entities")
        for t in db.query("SELECT * FROM turns WHERE call_sid = ? ORDER BY seq", [call_sid])
    ]
    call["events"] = [
        _decode(e, "detail")
        for e in db.query("SELECT * FROM events WHERE call_sid = ? ORDER BY id", [call_sid])
    ]
    return call


def list_calls(
    db: sqlite_utils.Database, limit: int = 50, where: str = "", params: list[Any] | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM calls"
    if where:
        sql += f" WHERE {where}"
    sql += " ORDER BY started_at DESC LIMIT ?"
    return list(db.query(sql, [*(params or []), limit]))


def _decode(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if row.get(key):
            row[key] = json.loads(row[key])
    return row
