"""The console's one search box: a ticket code, the last digits of a phone number, or words.

Words are matched with SQLite FTS5 over text folded by `hotline.text.fold` (lowercase, no
diacritics, đ -> d), so "mat dien trieu phong" finds "mất điện ... Triệu Phong". FTS5's own
`remove_diacritics` leaves "đ" alone, hence folding in Python.

Keeping the index in sync: triggers on calls, turns and tickets only note *which* row changed
(in `search_dirty`); the folding happens in Python when the console next searches. Triggers
cannot call Python on connections that did not register the function (the CLI, tests, another
process), and a note in a plain table works from any connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from hotline.store import Table, register_schema
from hotline.text import fold
from hotline.tickets.codes import clean_code, is_valid

SEARCH_DIRTY = Table("search_dirty", {"kind": str, "ref": str}, pk=("kind", "ref"))
# Calls flagged as tests other than the console's own ("Gọi thử" callers start with console:):
# replays made with a test flag. They are labelled, left out of figures and queue, not routed.
TEST_CALLS = Table("test_calls", {"call_sid": str, "marked_at": str, "by": str}, pk="call_sid")
register_schema(SEARCH_DIRTY, TEST_CALLS)

FTS = "search_fts"
_TRIGGERS = {
    "search_tickets_ins": "AFTER INSERT ON tickets BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('ticket', NEW.id); END",
    "search_tickets_upd": "AFTER UPDATE ON tickets BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('ticket', NEW.id); END",
    "search_tickets_del": "AFTER DELETE ON tickets BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('ticket', OLD.id); END",
    "search_calls_ins": "AFTER INSERT ON calls BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('call', NEW.call_sid); END",
    "search_calls_upd": "AFTER UPDATE ON calls BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('call', NEW.call_sid); END",
    "search_turns_ins": "AFTER INSERT ON turns BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('call', NEW.call_sid); END",
    "search_turns_upd": "AFTER UPDATE ON turns BEGIN INSERT OR IGNORE INTO search_dirty"
    " VALUES ('call', NEW.call_sid); END",
    # A test call's ticket is never routed to an agency, whoever confirms it.
    "test_call_unrouted": "AFTER UPDATE OF confirmed ON tickets WHEN NEW.confirmed = 1"
    " AND OLD.confirmed = 0 AND (COALESCE(NEW.caller, '') LIKE 'console:%'"
    " OR NEW.call_sid IN (SELECT call_sid FROM test_calls)) BEGIN UPDATE tickets"
    " SET agency_code = 'test', agency_name = 'Không giao cơ quan (cuộc gọi thử)'"
    " WHERE id = NEW.id; END",
}
MAX_RESULTS = 50
_WORD = re.compile(r"[0-9a-z]+")

# A call counts as a test call when this holds (alias c for calls).
TEST_CALL_SQL = (
    "(c.caller LIKE 'console:%' OR EXISTS (SELECT 1 FROM test_calls x"
    " WHERE x.call_sid = c.call_sid))"
)


def test_call_sql(alias: str) -> str:
    return TEST_CALL_SQL.replace("c.", f"{alias}.")


def mark_test_call(db: sqlite_utils.Database, call_sid: str, by: str = "replay") -> None:
    from hotline.store import now_iso

    db.execute(
        "INSERT OR IGNORE INTO test_calls (call_sid, marked_at, by) VALUES (?, ?, ?)",
        [call_sid, now_iso(), by],
    )


def ensure_index(db: sqlite_utils.Database) -> None:
    """Create the FTS table and triggers if missing; a new index starts with every row dirty."""
    have = {r["name"] for r in db.query("SELECT name FROM sqlite_master")}
    if FTS not in have:
        db.execute(
            f"CREATE VIRTUAL TABLE {FTS} USING fts5(kind UNINDEXED, ref UNINDEXED, body,"
            " tokenize = 'unicode61')"
        )
        db.execute("INSERT OR IGNORE INTO search_dirty SELECT 'ticket', id FROM tickets")
        db.execute("INSERT OR IGNORE INTO search_dirty SELECT 'call', call_sid FROM calls")
    for name, body in _TRIGGERS.items():
        if name not in have:
            db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")


def _ticket_text(db: sqlite_utils.Database, ref: str) -> str | None:
    rows = list(db.query("SELECT * FROM tickets WHERE id = ?", [ref]))
    if not rows:
        return None
    t = rows[0]
    notes = [
        r["note"]
        for r in db.query(
            "SELECT note FROM ticket_history WHERE ticket_id = ? AND note IS NOT NULL", [ref]
        )
    ]
    # Words only: a category label ("Điện, nước") would make every water cut match "mất điện".
    parts = [
        t.get("code"),
        t.get("description"),
        t.get("location_raw"),
        t.get("location_unit"),
        t.get("agency_name"),
        *notes,
    ]
    return fold(" ".join(p for p in parts if p))


def _call_text(db: sqlite_utils.Database, ref: str) -> str | None:
    rows = list(db.query("SELECT * FROM calls WHERE call_sid = ?", [ref]))
    if not rows:
        return None
    c = rows[0]
    said = [
        r["text"]
        for r in db.query(
            "SELECT text FROM turns WHERE call_sid = ? AND speaker = 'caller' AND kind != 'dtmf'"
            " AND text IS NOT NULL ORDER BY seq",
            [ref],
        )
    ]
    places = [
        r["location_raw"] or r["location_unit"]
        for r in db.query(
            "SELECT category, location_raw, location_unit FROM tickets WHERE call_sid = ?", [ref]
        )
    ]
    parts = [
        c.get("ticket_code"),
        *said,
        *(p for p in places if p),
    ]
    return fold(" ".join(p for p in parts if p))


def sync(db: sqlite_utils.Database) -> int:
    """Re-index the rows the triggers marked; returns how many."""
    dirty = list(db.query("SELECT kind, ref FROM search_dirty"))
    for d in dirty:
        kind, ref = d["kind"], str(d["ref"])
        db.execute(f"DELETE FROM {FTS} WHERE kind = ? AND ref = ?", [kind, ref])
        text = _ticket_text(db, ref) if kind == "ticket" else _call_text(db, ref)
        if text is not None:
            db.execute(f"INSERT INTO {FTS} (kind, ref, body) VALUES (?, ?, ?)", [kind, ref, text])
        db.execute("DELETE FROM search_dirty WHERE kind = ? AND ref = ?", [kind, ref])
    return len(dirty)


@dataclass
class Results:
    query: str
    kind: str  # code | digits | words | empty
    code: str = ""  # a valid code that has a ticket: the page jumps there
    message: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)


def _match_expr(query: str) -> str:
    # Every word must appear; the last one may be the start of a word (typing "trieu ph").
    words = _WORD.findall(fold(query))
    if not words:
        return ""
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " AND ".join(quoted)


def search(db: sqlite_utils.Database, query: str) -> Results:
    query = " ".join((query or "").split())[:200]
    res = Results(query, "empty")
    if not query:
        return res
    digits = re.sub(r"[\s.\-+()]", "", query)
    if digits.isdigit():
        code = clean_code(digits)
        if len(code) == 7 and is_valid(code):
            found = db.execute(
                "SELECT 1 FROM tickets WHERE code = ? AND confirmed = 1", [code]
            ).fetchone()
            if found:
                res.kind, res.code = "code", code
                return res
            res.message = f"Không có phiếu mã {code}; dưới đây là các số gọi kết thúc bằng {code}."
        elif len(code) == 7:
            res.message = (
                f"“{code}” không phải mã phiếu hợp lệ (sai chữ số kiểm tra);"
                " dưới đây là các số gọi kết thúc bằng các chữ số này."
            )
        if len(digits) < 3:
            res.kind = "digits"
            res.message = "Hãy nhập ít nhất 3 chữ số cuối của số điện thoại."
            return res
        res.kind = "digits"
        tail = "%" + digits.lstrip("0")[-12:] if len(digits) > 9 else "%" + digits
        res.calls = _calls(db, "c.caller LIKE ?", [tail])
        res.tickets = _tickets(db, "t.caller LIKE ?", [tail])
        return res
    res.kind = "words"
    expr = _match_expr(query)
    if not expr:
        res.message = "Hãy nhập từ cần tìm."
        return res
    sync(db)
    hits = list(
        db.query(
            f"SELECT kind, ref FROM {FTS} WHERE {FTS} MATCH ? ORDER BY bm25({FTS}) LIMIT ?",
            [expr, MAX_RESULTS * 2],
        )
    )
    call_ids = [h["ref"] for h in hits if h["kind"] == "call"][:MAX_RESULTS]
    ticket_ids = [h["ref"] for h in hits if h["kind"] == "ticket"][:MAX_RESULTS]
    if call_ids:
        marks = ",".join("?" for _ in call_ids)
        res.calls = _calls(db, f"c.call_sid IN ({marks})", call_ids)
    if ticket_ids:
        marks = ",".join("?" for _ in ticket_ids)
        res.tickets = _tickets(db, f"t.id IN ({marks})", [int(i) for i in ticket_ids])
    return res


def _calls(db: sqlite_utils.Database, where: str, params: list[Any]) -> list[dict[str, Any]]:
    from hotline.console.queries import annotate_calls

    rows = list(
        db.query(
            f"SELECT c.*, {TEST_CALL_SQL} AS is_test FROM calls c WHERE {where}"
            " ORDER BY c.started_at DESC LIMIT ?",
            [*params, MAX_RESULTS],
        )
    )
    return annotate_calls(db, rows)


def _tickets(db: sqlite_utils.Database, where: str, params: list[Any]) -> list[dict[str, Any]]:
    return list(
        db.query(
            f"SELECT t.* FROM tickets t WHERE {where}"
            " ORDER BY COALESCE(t.confirmed_at, t.created_at) DESC LIMIT ?",
            [*params, MAX_RESULTS],
        )
    )
