"""The outbox: every message to a resident (SMS when a ticket is accepted, resolved or refused)
is a row written in the same transaction as the change that caused it, then delivered by a
background worker with retries and backoff. A restart loses nothing: pending rows are picked up
again. Without SMS configured the row still records what would have been sent.

States: pending -> sent | failed (gave up after OUTBOX_MAX_ATTEMPTS) | not_configured.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import string
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
import yaml

from hotline.calls import mask_number
from hotline.store import Table, now_iso, register_schema

log = logging.getLogger(__name__)

OUTBOX = Table(
    "outbox",
    {
        "id": int,
        "ticket_id": int,
        "channel": str,  # sms
        "to_number": str,
        "body": str,
        "reason": str,  # what caused it: status:đã xử lý
        "state": str,  # pending | sent | failed | not_configured
        "attempts": int,
        "next_at": str,
        "sent_at": str,
        "provider_id": str,  # Twilio's message SID
        "last_error": str,
        "created_at": str,
    },
    pk="id",
    defaults={"attempts": 0, "state": "pending"},
    indexes=(("state", "next_at"), ("ticket_id",)),
)
register_schema(OUTBOX)

MESSAGES_PATH = Path(__file__).resolve().parents[1] / "call_flows" / "messages.yml"
MAX_ATTEMPTS = 8
BACKOFF_CAP_S = 3600.0


class MessagesError(ValueError):
    pass


@functools.lru_cache(maxsize=4)
def load_templates(path: Path = MESSAGES_PATH) -> dict[str, str]:
    """status -> SMS template, checked: only {code}, {agency} and {note}."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MessagesError(f"{path}: cannot read: {exc}") from None
    status = raw.get("status") or {}
    out = {}
    for key, text in status.items():
        key = unicodedata.normalize("NFC", str(key))
        text = unicodedata.normalize("NFC", " ".join(str(text).split()))
        names = {n for _, n, _, _ in string.Formatter().parse(text) if n}
        if names - {"code", "agency", "note"}:
            raise MessagesError(f"{path}: status.{key}: unknown placeholders {sorted(names)}")
        out[key] = text
    return out


def _spaced(code: str) -> str:
    return f"{code[:3]} {code[3:]}" if len(code) == 7 else code


def status_message(ticket: dict[str, Any], status: str, note: str | None) -> str | None:
    template = load_templates().get(status)
    if not template:
        return None
    text = template.format(
        code=_spaced(ticket.get("code") or ""),
        agency=ticket.get("agency_name") or "cơ quan chức năng",
        note=(note or "").strip(),
    )
    return " ".join(text.split()).replace(" .", ".")


def enqueue(
    db: sqlite_utils.Database, *, ticket_id: int, to: str | None, body: str, reason: str
) -> int | None:
    """Queue a message in the caller's transaction. Nothing for numbers that can't get one
    (a console test call, an erased number)."""
    if not to or not to.startswith("+"):
        return None
    now = now_iso()
    cur = db.execute(
        "INSERT INTO outbox (ticket_id, channel, to_number, body, reason, state, attempts,"
        " next_at, created_at) VALUES (?, 'sms', ?, ?, ?, 'pending', 0, ?, ?)",
        [ticket_id, to, unicodedata.normalize("NFC", body), reason, now, now],
    )
    return int(cur.lastrowid)  # type: ignore[arg-type]


def for_ticket(db: sqlite_utils.Database, ticket_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM outbox WHERE ticket_id = ? ORDER BY id", [ticket_id]))


def _due(db: sqlite_utils.Database, now: str, limit: int = 20) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT * FROM outbox WHERE state = 'pending' AND next_at <= ? ORDER BY id LIMIT ?",
            [now, limit],
        )
    )


def backoff_s(attempts: int, base_s: float) -> float:
    return min(base_s * 2 ** max(attempts - 1, 0), BACKOFF_CAP_S)


async def deliver_due(store: Any, rest: Any, *, base_backoff_s: float = 30.0) -> int:
    """Send what is due; returns how many were sent."""
    rows = await store.arun(lambda db: _due(db, now_iso()))
    sent = 0
    for row in rows:
        if not rest.can_send_sms:
            await store.arun(
                lambda db, r=row: db.execute(
                    "UPDATE outbox SET state = 'not_configured' WHERE id = ?", [r["id"]]
                )
            )
            continue
        sid = await rest.send_sms(row["to_number"], row["body"])
        attempts = row["attempts"] + 1
        if sid:
            sent += 1
            update = {"state": "sent", "sent_at": now_iso(), "provider_id": sid}
        else:
            later = datetime.now(UTC) + timedelta(seconds=backoff_s(attempts, base_backoff_s))
            update = {
                "state": "failed" if attempts >= MAX_ATTEMPTS else "pending",
                "next_at": later.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "last_error": "send failed (see log)",
            }
            log.warning(
                "outbox %s to %s: attempt %d failed",
                row["id"],
                mask_number(row["to_number"]),
                attempts,
            )
        update["attempts"] = attempts
        await store.arun(lambda db, r=row, u=update: db.table("outbox").update(r["id"], u))
    return sent


async def run(store: Any, rest: Any, *, every_s: float = 2.0, base_backoff_s: float = 30.0) -> None:
    """The worker: deliver what is due, forever (cancel to stop)."""
    while True:
        try:
            await deliver_due(store, rest, base_backoff_s=base_backoff_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox delivery failed; retrying")
        await asyncio.sleep(every_s)
