"""Incidents: reports of the same category in the same commune/ward within a time window are
one incident (in a typhoon, 300 calls about one flooded road are one thing to work).

Every report stays its own ticket (its own code and updates) and points at its incident. The
grouping runs inside the confirmation's transaction, and the Store serialises writes, so
concurrent reports about one place land in one incident. Resolving an incident resolves its
open tickets, each through the normal status change, so every reporter gets the SMS.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from hotline.store import Table, now_iso, register_schema

INCIDENTS = Table(
    "incidents",
    {
        "id": int,
        "category": str,
        "location_code": str,  # the commune/ward (gazetteer code) the reports name
        "location_unit": str,
        "status": str,  # open | resolved
        "opened_at": str,
        "last_report_at": str,
        "resolved_at": str,
        "note": str,
    },
    pk="id",
    indexes=(("category", "location_code", "status"),),
)
register_schema(INCIDENTS)

DEFAULT_WINDOW = timedelta(hours=24)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def attach(
    db: sqlite_utils.Database, ticket: dict[str, Any], *, window: timedelta = DEFAULT_WINDOW
) -> dict[str, Any] | None:
    """Group a just-confirmed ticket with the reports like it. Returns the incident with its
    `reports` count, or None when the ticket stands alone (no place, or the first report)."""
    category, code = ticket.get("category"), ticket.get("location_code")
    if not category or not code or category in ("voice_message", "keypad_report"):
        return None
    now = ticket.get("confirmed_at") or now_iso()
    since = _iso(datetime.fromisoformat(now.replace("Z", "+00:00")) - window)
    rows = list(
        db.query(
            "SELECT * FROM incidents WHERE category = ? AND location_code = ? AND status = 'open'"
            " AND last_report_at >= ? ORDER BY id DESC LIMIT 1",
            [category, code, since],
        )
    )
    if rows:
        incident = rows[0]
    else:
        # A second report like an earlier, still open one: the two become an incident.
        earlier = list(
            db.query(
                "SELECT id FROM tickets WHERE confirmed = 1 AND incident_id IS NULL AND id != ?"
                " AND category = ? AND location_code = ? AND confirmed_at >= ?"
                " AND status NOT IN ('đã xử lý', 'từ chối')",
                [ticket["id"], category, code, since],
            )
        )
        if not earlier:
            return None
        cur = db.execute(
            "INSERT INTO incidents (category, location_code, location_unit, status, opened_at,"
            " last_report_at) VALUES (?, ?, ?, 'open', ?, ?)",
            [category, code, ticket.get("location_unit"), now, now],
        )
        incident = {"id": int(cur.lastrowid), "category": category}  # type: ignore[arg-type]
        ids = [r["id"] for r in earlier]
        db.execute(
            f"UPDATE tickets SET incident_id = ? WHERE id IN ({', '.join('?' for _ in ids)})",
            [incident["id"], *ids],
        )
    db.execute("UPDATE tickets SET incident_id = ? WHERE id = ?", [incident["id"], ticket["id"]])
    db.execute("UPDATE incidents SET last_report_at = ? WHERE id = ?", [now, incident["id"]])
    return get(db, incident["id"])


def get(db: sqlite_utils.Database, incident_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM incidents WHERE id = ?", [incident_id]))
    if not rows:
        return None
    incident = rows[0]
    incident["tickets"] = list(
        db.query(
            "SELECT id, code, status, confirmed_at, location_raw FROM tickets"
            " WHERE incident_id = ? ORDER BY confirmed_at",
            [incident_id],
        )
    )
    incident["reports"] = len(incident["tickets"])
    return incident


def list_open(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT i.*, COUNT(t.id) AS reports FROM incidents i"
            " JOIN tickets t ON t.incident_id = i.id WHERE i.status = 'open'"
            " GROUP BY i.id ORDER BY reports DESC, i.last_report_at DESC"
        )
    )


def merge(db: sqlite_utils.Database, into: int, other: int) -> dict[str, Any]:
    """Move every report of `other` into `into` (an operator saw they are one thing)."""
    with db.atomic():
        if get(db, into) is None or get(db, other) is None:
            raise KeyError("no such incident")
        db.execute("UPDATE tickets SET incident_id = ? WHERE incident_id = ?", [into, other])
        db.execute(
            "UPDATE incidents SET status = 'merged', note = ? WHERE id = ?",
            [f"gộp vào sự việc {into}", other],
        )
    return get(db, into)  # type: ignore[return-value]


def split(db: sqlite_utils.Database, ticket_code: str) -> None:
    """Take one report out of its incident (it was about something else)."""
    with db.atomic():
        db.execute("UPDATE tickets SET incident_id = NULL WHERE code = ?", [ticket_code])


def resolve(db: sqlite_utils.Database, incident_id: int, *, note: str, actor: str) -> list[str]:
    """Resolve the incident and each of its open tickets (every reporter is notified by the
    status change's SMS). Returns the codes resolved."""
    from hotline.tickets import store as tickets

    done = []
    with db.atomic():
        incident = get(db, incident_id)
        if incident is None:
            raise KeyError(f"no incident {incident_id}")
        for t in incident["tickets"]:
            path = {
                tickets.NEW: [tickets.RECEIVED, tickets.IN_PROGRESS, tickets.RESOLVED],
                tickets.RECEIVED: [tickets.IN_PROGRESS, tickets.RESOLVED],
                tickets.IN_PROGRESS: [tickets.RESOLVED],
            }.get(t["status"], [])
            for k, status in enumerate(path):
                last = k == len(path) - 1
                tickets.set_status(
                    db, t["code"], status, note=note if last else None, actor=actor, notify=last
                )
            if path:
                done.append(t["code"])
        db.execute(
            "UPDATE incidents SET status = 'resolved', resolved_at = ?, note = ? WHERE id = ?",
            [now_iso(), note, incident_id],
        )
    return done
