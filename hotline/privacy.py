"""Personal data: retention, data-subject requests, audited access, files at rest.

What the hotline keeps about a caller: the number (calls.caller, tickets.caller), the audio
(recordings/<CallSid>.{caller,bot,}.wav), the words (turns.text, tickets.description and
location_raw, NLU corrections) and the SMS sent to them (events of kind `sms`,
tickets.sms_sent_at). This module

- applies the retention settings (`purge`): audio and transcripts go after their periods,
  numbers become pseudonyms, closed tickets lose their personal fields but stay as records of
  public service; whatever belongs to an open ticket is kept until it closes;
- answers a person's request about one number (`find`, `export_zip`, `erase`) and tracks the
  request against its legal deadlines (`privacy_requests`);
- audits access to recordings and full numbers (`audit_access`);
- keeps the data directory owner-only (`check_data_permissions`, `secure_data_dir`).

Functions take a sqlite_utils.Database; the caller decides the transaction (the server's Store,
or the CLI's own connection). Nothing here talks to the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from hotline.calls import caller_hash, mask_number
from hotline.console.store import audit
from hotline.store import Table, now_iso, register_schema
from hotline.workdays import add_working_days

log = logging.getLogger(__name__)

PSEUDONYM_PREFIX = "anon:"
ERASED = "erased"  # calls.caller after an erasure: no number, no hash, nothing to match
REDACTED = "[đã xoá]"  # text removed by retention or erasure (the row stays: timings, intents)
CLOSED_STATUSES = ("đã xử lý", "từ chối")
ACCESS_AUDIT_WINDOW = timedelta(minutes=10)  # one listen = many Range requests: log it once

# --- data-subject requests -----------------------------------------------------------------------

REQUESTS = Table(
    "privacy_requests",
    {
        "id": int,
        "kind": str,  # access | correction | deletion | objection
        "number": str,  # E.164 while the request is open; cleared when it is closed
        "number_hash": str,
        "number_masked": str,
        "requester": str,  # name as given, how they proved who they are
        "channel": str,  # in person, letter, phone, email, portal
        "received_on": str,  # local date, YYYY-MM-DD
        "ack_due": str,  # 2 working days after receipt
        "due": str,  # the legal deadline for the request itself
        "acknowledged_at": str,
        "status": str,  # open | acknowledged | done | refused
        "closed_at": str,
        "note": str,
        "created_by": str,
        "created_at": str,
        "updated_at": str,
    },
    pk="id",
    indexes=(("status",), ("due",)),
)
register_schema(REQUESTS)

REQUEST_KINDS = {
    "access": "Xem / cung cấp dữ liệu (access)",
    "correction": "Chỉnh sửa dữ liệu (correction)",
    "deletion": "Xoá dữ liệu (deletion)",
    "objection": "Phản đối, hạn chế xử lý (objection, restriction)",
}
# Calendar days from receipt (Decree 356/2025/NĐ-CP as reported by secondary sources: see
# PRIVACY.md). The acknowledgement is due in working days.
REQUEST_DAYS = {"access": 10, "correction": 10, "deletion": 20, "objection": 15}
ACK_WORKING_DAYS = 2
PRIVACY_ACTIONS = (
    "privacy_request_new",
    "privacy_request_ack",
    "privacy_request_close",
    "privacy_find",
    "privacy_export",
    "privacy_erase",
    "privacy_purge",
)
REQUEST_STATUS = {
    "open": "Mới nhận",
    "acknowledged": "Đã phản hồi tiếp nhận",
    "done": "Đã xong",
    "refused": "Từ chối",
}


class PrivacyError(ValueError):
    """A refused privacy operation, in Vietnamese first (for operators), then English."""


# --- phone numbers ---------------------------------------------------------------------------------


def normalize_phone(raw: str) -> str:
    """'0905 123 456', '+84905123456', '84905123456', '(090) 512-3456' -> '+84905123456'.

    Vietnamese national numbers (leading 0, or 9-10 digits without it) get +84; numbers
    written with + or 00 keep their country code."""
    text = (raw or "").strip()
    compact = re.sub(r"[\s().\-/]", "", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+"):
        body = compact[1:]
    elif compact.startswith("84") and len(compact) >= 11:
        body = compact
    elif compact.startswith("0"):
        body = "84" + compact[1:]
    else:
        body = "84" + compact
    if not body.isdigit() or not 9 <= len(body) <= 15:
        raise PrivacyError(
            f"Số điện thoại không hợp lệ: {raw!r} (not a phone number: try 0905123456 or "
            "+84905123456)"
        )
    return "+" + body


def _same_number(stored: str | None, e164: str) -> bool:
    if not stored or stored.startswith((PSEUDONYM_PREFIX, "console:", ERASED)):
        return False
    try:
        return normalize_phone(stored) == e164
    except PrivacyError:
        return False


def pseudonym(number: str, secret: str, known_hash: str | None = None) -> str:
    """A stable stand-in for a number: calls from one number stay grouped, and only someone
    holding the service's secret and the number itself can link them back (for a request)."""
    return PSEUDONYM_PREFIX + (known_hash or caller_hash(number, secret))[:12]


# --- find / export / erase -----------------------------------------------------------------------


@dataclass
class SubjectData:
    number: str  # E.164
    calls: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)
    sms: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def call_sids(self) -> list[str]:
        return [c["call_sid"] for c in self.calls]

    def counts(self) -> dict[str, int]:
        return {
            "calls": len(self.calls),
            "tickets": len(self.tickets),
            "recordings": len(self.recordings),
            "sms": len(self.sms),
            "corrections": len(self.corrections),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "exported_at": now_iso(),
            "counts": self.counts(),
            "calls": self.calls,
            "tickets": self.tickets,
            "recordings": [p.name for p in self.recordings],
            "sms": self.sms,
            "nlu_corrections": self.corrections,
        }


# The caller column with the separators people type removed, for a LIKE on the last digits.
_COMPACT = (
    "REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(caller, ' ', ''), '-', ''), '.', ''), '(', ''),"
    " ')', '')"
)


def _in(values: Iterable[Any]) -> tuple[str, list[Any]]:
    vals = list(values)
    return ",".join("?" for _ in vals) or "NULL", vals


def _recording_files(call: dict[str, Any], recordings_dir: Path) -> list[Path]:
    """The call's audio files that exist under the recordings directory (never elsewhere,
    whatever the database says)."""
    root = recordings_dir.resolve()
    sid = call["call_sid"]
    candidates = [
        call.get("recording_path"),
        call.get("bot_recording_path"),
        call.get("mixed_recording_path"),
        root / f"{sid}.wav",
        root / f"{sid}.caller.wav",
        root / f"{sid}.bot.wav",
    ]
    out: list[Path] = []
    for c in candidates:
        if not c:
            continue
        try:
            p = Path(c).resolve()
        except (OSError, RuntimeError):
            continue
        if p.is_relative_to(root) and p.is_file() and p not in out:
            out.append(p)
    return out


def find(
    db: sqlite_utils.Database, number: str, *, secret: str, recordings_dir: Path
) -> SubjectData:
    """Everything kept about one number: its calls (with turns and events), tickets (with
    history), recordings, SMS and NLU corrections. Pseudonymised calls are found through the
    number's hash; erased ones are gone."""
    e164 = normalize_phone(number)
    h = caller_hash(e164, secret)
    tail = "%" + e164[-9:]
    calls = [
        r
        for r in db.query(
            f"SELECT * FROM calls WHERE caller_hash = ? OR {_COMPACT} LIKE ? ORDER BY started_at",
            [h, tail],
        )
        if r.get("caller_hash") == h or _same_number(r.get("caller"), e164)
    ]
    sids = [c["call_sid"] for c in calls]
    marks, params = _in(sids)
    for c in calls:
        c["turns"] = list(
            db.query(
                "SELECT seq, speaker, kind, text, start_ms, end_ms, intent, intent_confidence,"
                " state, created_at FROM turns WHERE call_sid = ? ORDER BY seq",
                [c["call_sid"]],
            )
        )
        c["events"] = list(
            db.query(
                "SELECT at, call_ms, kind, detail FROM events WHERE call_sid = ? ORDER BY id",
                [c["call_sid"]],
            )
        )
    tickets = [
        t
        for t in db.query(
            f"SELECT * FROM tickets WHERE call_sid IN ({marks}) OR {_COMPACT} LIKE ? ORDER BY id",
            [*params, tail],
        )
        if t.get("call_sid") in sids or _same_number(t.get("caller"), e164)
    ]
    for t in tickets:
        t["history"] = list(
            db.query(
                "SELECT at, actor, action, from_status, to_status, note FROM ticket_history"
                " WHERE ticket_id = ? ORDER BY id",
                [t["id"]],
            )
        )
    sms = [
        {"at": e["at"], "call_sid": c["call_sid"], "kind": "sms", "detail": e["detail"]}
        for c in calls
        for e in c["events"]
        if e["kind"] == "sms"
    ]
    for t in tickets:
        if t.get("sms_sent_at"):
            sms.append(
                {"at": t["sms_sent_at"], "ticket_code": t.get("code"), "kind": "ticket_code_sms"}
            )
    corrections: list[dict[str, Any]] = []
    if db.table("nlu_corrections").exists():
        corrections = list(
            db.query(
                f"SELECT id, call_sid, text, corrected_intent, at FROM nlu_corrections"
                f" WHERE call_sid IN ({marks}) ORDER BY id",
                params,
            )
        )
    recordings = [p for c in calls for p in _recording_files(c, recordings_dir)]
    return SubjectData(e164, calls, tickets, recordings, sms, corrections)


def export_zip(data: SubjectData, out: Path | io.BytesIO) -> int:
    """data.json (everything, with the full number: it is the person's own data), the audio
    files, and a short note in Vietnamese and English. Returns the number of audio files.
    A file on disk is created owner-only."""
    note = (
        f"Dữ liệu cá nhân của số {data.number} do Đường dây nóng 1900868674 tỉnh Quảng Trị lưu giữ.\n"
        "data.json: các cuộc gọi (lời nói từng lượt, thời điểm), phiếu phản ánh và lịch sử xử lý,\n"
        "tin nhắn SMS đã gửi. audio/: bản ghi âm (CallSid.wav: người gọi kênh trái, tổng đài\n"
        "kênh phải; .caller.wav: chỉ người gọi; .bot.wav: chỉ tổng đài).\n\n"
        f"Personal data held for {data.number} by the Quảng Trị hotline 1900868674. data.json: calls\n"
        "(every turn's words and times), tickets and their history, SMS sent. audio/: recordings.\n"
    )
    if isinstance(out, Path):
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        target: Any = os.fdopen(fd, "wb")
    else:
        target = contextlib.nullcontext(out)
    with target as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.txt", note)
        z.writestr(
            "data.json", json.dumps(data.as_json(), ensure_ascii=False, indent=1, default=str)
        )
        for p in data.recordings:
            z.write(p, f"audio/{p.name}")
    return len(data.recordings)


def _delete_files(paths: Iterable[Path]) -> int:
    n = 0
    for p in paths:
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


def erase(
    db: sqlite_utils.Database,
    data: SubjectData,
    *,
    actor: str,
    ip: str | None = None,
    request_id: int | None = None,
) -> dict[str, int]:
    """Erase one number's personal data: audio files deleted; calls keep their times and
    outcome with no number and no hash; every turn's words removed; tickets keep category,
    commune, agency, status and dates (a record of public service) without number, words,
    place as said or internal comments; NLU corrections from those calls deleted. One audit
    line with the counts (the number itself is not written to the log)."""
    files = _delete_files(data.recordings)
    sids = data.call_sids
    marks, params = _in(sids)
    ticket_ids = [t["id"] for t in data.tickets]
    tmarks, tparams = _in(ticket_ids)
    with db.atomic():
        db.execute(
            f"UPDATE calls SET caller = ?, caller_hash = NULL, recording_path = NULL,"
            f" bot_recording_path = NULL, mixed_recording_path = NULL, updated_at = ?"
            f" WHERE call_sid IN ({marks})",
            [ERASED, now_iso(), *params],
        )
        turns = db.execute(
            f"UPDATE turns SET text = ?, words = NULL, entities = NULL"
            f" WHERE call_sid IN ({marks}) AND (text IS NULL OR text != ?)",
            [REDACTED, *params, REDACTED],
        ).rowcount
        _strip_tickets(db, tmarks, tparams)
        corrections = 0
        if db.table("nlu_corrections").exists():
            corrections = db.execute(
                f"DELETE FROM nlu_corrections WHERE call_sid IN ({marks})", params
            ).rowcount
        counts = {
            "calls": len(sids),
            "tickets": len(ticket_ids),
            "audio_files": files,
            "turns": turns,
            "corrections": corrections,
        }
        audit(
            db,
            actor,
            "privacy_erase",
            f"request:{request_id}" if request_id else mask_number(data.number),
            counts,
            ip,
        )
    return counts


def _strip_tickets(db: sqlite_utils.Database, marks: str, params: list[Any]) -> int:
    n = db.execute(
        f"UPDATE tickets SET caller = NULL, description = ?, location_raw = NULL,"
        f" location_json = NULL, recording_path = NULL WHERE id IN ({marks})",
        [REDACTED, *params],
    ).rowcount
    db.execute(
        f"UPDATE ticket_history SET note = ? WHERE action = 'comment' AND note IS NOT NULL"
        f" AND note != ? AND ticket_id IN ({marks})",
        [REDACTED, REDACTED, *params],
    )
    return n


# --- retention -----------------------------------------------------------------------------------


@dataclass
class PurgeReport:
    as_of: str
    dry_run: bool
    audio_calls: int = 0
    audio_files: int = 0
    transcript_calls: int = 0
    turns_redacted: int = 0
    numbers_pseudonymised: int = 0
    tickets_numbers_pseudonymised: int = 0
    tickets_stripped: int = 0
    kept_for_open_tickets: int = 0

    def counts(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("as_of")
        return d


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A call is held while one of its tickets is open; once they are all closed, the period runs
# again from the latest closing (so a reopened ticket still has its evidence for a while).
_OPEN = (
    "EXISTS (SELECT 1 FROM tickets t WHERE t.call_sid = c.call_sid AND t.confirmed = 1"
    " AND (t.status IS NULL OR t.status NOT IN ('đã xử lý', 'từ chối')))"
)
_CLOSED_RECENTLY = (
    "EXISTS (SELECT 1 FROM tickets t WHERE t.call_sid = c.call_sid AND t.resolved_at >= ?)"
)


def _due_calls(db: sqlite_utils.Database, cutoff: str, extra: str) -> list[dict[str, Any]]:
    return list(
        db.query(
            f"SELECT c.* FROM calls c WHERE COALESCE(c.started_at, c.updated_at) < ?"
            f" AND NOT {_OPEN} AND NOT {_CLOSED_RECENTLY} AND ({extra})",
            [cutoff, cutoff],
        )
    )


def purge(
    db: sqlite_utils.Database,
    settings: Any,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    actor: str = "hotline:retention",
) -> PurgeReport:
    """Apply the retention settings as of `now` (default: the current time)."""
    now = now or datetime.now(UTC)
    report = PurgeReport(as_of=_iso(now), dry_run=dry_run)
    root = settings.recordings_dir

    # Audio.
    cutoff = _iso(now - timedelta(days=settings.retain_audio_days))
    audio_calls = _due_calls(
        db,
        cutoff,
        "c.recording_path IS NOT NULL OR c.mixed_recording_path IS NOT NULL"
        " OR c.bot_recording_path IS NOT NULL",
    )
    held = db.execute(
        f"SELECT COUNT(*) FROM calls c WHERE COALESCE(c.started_at, c.updated_at) < ?"
        f" AND c.mixed_recording_path IS NOT NULL AND ({_OPEN} OR {_CLOSED_RECENTLY})",
        [cutoff, cutoff],
    ).fetchone()[0]
    report.kept_for_open_tickets = held
    report.audio_calls = len(audio_calls)
    files = [p for c in audio_calls for p in _recording_files(c, root)]
    if dry_run:
        report.audio_files = len(files)
    else:
        report.audio_files = _delete_files(files)
        marks, params = _in(c["call_sid"] for c in audio_calls)
        db.execute(
            f"UPDATE calls SET recording_path = NULL, bot_recording_path = NULL,"
            f" mixed_recording_path = NULL WHERE call_sid IN ({marks})",
            params,
        )
        db.execute(f"UPDATE tickets SET recording_path = NULL WHERE call_sid IN ({marks})", params)
    report.audio_files += _sweep_orphans(
        db, root, now - timedelta(days=settings.retain_audio_days), dry_run
    )

    # Transcripts.
    cutoff = _iso(now - timedelta(days=settings.retain_transcripts_days))
    t_calls = _due_calls(
        db,
        cutoff,
        "EXISTS (SELECT 1 FROM turns u WHERE u.call_sid = c.call_sid AND u.text IS NOT NULL"
        f" AND u.text != '{REDACTED}')",
    )
    report.transcript_calls = len(t_calls)
    marks, params = _in(c["call_sid"] for c in t_calls)
    where = f"call_sid IN ({marks}) AND text IS NOT NULL AND text != ?"
    if dry_run:
        report.turns_redacted = db.execute(
            f"SELECT COUNT(*) FROM turns WHERE {where}", [*params, REDACTED]
        ).fetchone()[0]
    else:
        report.turns_redacted = db.execute(
            f"UPDATE turns SET text = ?, words = NULL, entities = NULL WHERE {where}",
            [REDACTED, *params, REDACTED],
        ).rowcount

    # Caller numbers.
    cutoff = _iso(now - timedelta(days=settings.pseudonymise_numbers_days))
    n_calls = _due_calls(
        db,
        cutoff,
        f"c.caller IS NOT NULL AND c.caller != '' AND c.caller NOT LIKE '{PSEUDONYM_PREFIX}%'"
        f" AND c.caller NOT LIKE 'console:%' AND c.caller != '{ERASED}'",
    )
    report.numbers_pseudonymised = len(n_calls)
    secret = settings.session_secret
    for c in n_calls:
        alias = pseudonym(c["caller"], secret, c.get("caller_hash"))
        if not dry_run:
            db.execute(
                "UPDATE calls SET caller = ?, caller_hash = COALESCE(caller_hash, ?)"
                " WHERE call_sid = ?",
                [alias, caller_hash(c["caller"], secret), c["call_sid"]],
            )
            report.tickets_numbers_pseudonymised += db.execute(
                "UPDATE tickets SET caller = ? WHERE call_sid = ? AND caller IS NOT NULL"
                " AND (status IS NULL OR status IN ('đã xử lý', 'từ chối'))",
                [alias, c["call_sid"]],
            ).rowcount

    # Closed tickets' personal fields.
    cutoff = _iso(now - timedelta(days=settings.retain_closed_ticket_personal_days))
    rows = list(
        db.query(
            # Unconfirmed drafts (the caller hung up) never close: they count from creation.
            "SELECT id FROM tickets WHERE ((status IN ('đã xử lý', 'từ chối') AND resolved_at < ?)"
            " OR (confirmed = 0 AND created_at < ?))"
            " AND (caller IS NOT NULL OR description IS NOT ? OR location_raw IS NOT NULL)",
            [cutoff, cutoff, REDACTED],
        )
    )
    report.tickets_stripped = len(rows)
    if rows and not dry_run:
        marks, params = _in(r["id"] for r in rows)
        _strip_tickets(db, marks, params)

    if not dry_run:
        audit(db, actor, "privacy_purge", None, report.counts())
    log.info("privacy purge%s: %s", " (dry run)" if dry_run else "", report.counts())
    return report


def _sweep_orphans(db: sqlite_utils.Database, root: Path, before: datetime, dry_run: bool) -> int:
    """Audio files older than the period that belong to no call on record (a call row lost
    to a crash, a file copied in by hand): nothing would ever delete them otherwise."""
    if not root.is_dir():
        return 0
    known = {r["call_sid"] for r in db.query("SELECT call_sid FROM calls")}
    n = 0
    for p in root.glob("*.wav"):
        sid = p.name.split(".", 1)[0]
        if sid in known or p.stat().st_mtime >= before.timestamp():
            continue
        n += 1
        if not dry_run:
            p.unlink(missing_ok=True)
    return n


def _seconds_until(hhmm: str, tz: ZoneInfo, now: datetime) -> float:
    h, m = (int(x) for x in hhmm.split(":"))
    local = now.astimezone(tz)
    target = datetime.combine(local.date(), time(h, m), tz)
    if target <= local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


async def _retention_loop(services: Any, first_delay_s: float) -> None:
    s = services.settings
    try:
        tz = ZoneInfo(s.timezone)
    except Exception:
        tz = ZoneInfo("Asia/Ho_Chi_Minh")
    delay = first_delay_s
    while True:
        await asyncio.sleep(delay)
        try:
            await services.store.arun(lambda db: purge(db, s))
        except Exception:
            log.exception("privacy purge failed; retried at the next run")
        delay = _seconds_until(s.purge_time, tz, datetime.now(UTC))


def start_retention_task(services: Any, *, first_delay_s: float = 60.0) -> asyncio.Task[None]:
    """Run `purge` a minute after start (a server restarted every night still purges) and
    then every day at HOTLINE_PURGE_TIME. Call from the app's lifespan; cancel on shutdown."""
    return asyncio.get_running_loop().create_task(_retention_loop(services, first_delay_s))


# --- request deadlines ---------------------------------------------------------------------------


def deadlines(kind: str, received: date) -> tuple[date, date]:
    """(acknowledgement due, request due) for a request received on `received`."""
    if kind not in REQUEST_DAYS:
        raise PrivacyError(f"Loại yêu cầu không hợp lệ: {kind!r} (use one of {list(REQUEST_DAYS)})")
    return add_working_days(received, ACK_WORKING_DAYS), received + timedelta(
        days=REQUEST_DAYS[kind]
    )


def add_request(
    db: sqlite_utils.Database,
    *,
    kind: str,
    number: str,
    received_on: date,
    secret: str,
    requester: str = "",
    channel: str = "",
    note: str = "",
    actor: str,
    ip: str | None = None,
    today: date | None = None,
) -> int:
    e164 = normalize_phone(number)
    if received_on > (today or date.today()) + timedelta(days=1):
        raise PrivacyError("Ngày nhận yêu cầu không thể ở tương lai (received date in the future)")
    ack_due, due = deadlines(kind, received_on)
    now = now_iso()
    rid = (
        db.table("privacy_requests")
        .insert(
            {
                "kind": kind,
                "number": e164,
                "number_hash": caller_hash(e164, secret),
                "number_masked": mask_number(e164),
                "requester": requester.strip()[:200],
                "channel": channel.strip()[:50],
                "received_on": received_on.isoformat(),
                "ack_due": ack_due.isoformat(),
                "due": due.isoformat(),
                "status": "open",
                "note": note.strip()[:2000],
                "created_by": actor,
                "created_at": now,
                "updated_at": now,
            }
        )
        .last_pk
    )
    audit(db, actor, "privacy_request_new", f"request:{rid}", {"kind": kind, "due": str(due)}, ip)
    return int(rid)  # type: ignore[arg-type]


def get_request(db: sqlite_utils.Database, rid: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM privacy_requests WHERE id = ?", [rid]))
    return rows[0] if rows else None


def list_requests(db: sqlite_utils.Database, *, today: date | None = None) -> list[dict[str, Any]]:
    today = today or date.today()
    rows = list(
        db.query("SELECT * FROM privacy_requests ORDER BY status IN ('done', 'refused'), due, id")
    )
    for r in rows:
        decorate_request(r, today)
    return rows


def decorate_request(r: dict[str, Any], today: date) -> dict[str, Any]:
    is_open = r["status"] in ("open", "acknowledged")
    r["open"] = is_open
    r["overdue"] = is_open and date.fromisoformat(r["due"]) < today
    r["ack_overdue"] = r["status"] == "open" and date.fromisoformat(r["ack_due"]) < today
    r["days_left"] = (date.fromisoformat(r["due"]) - today).days
    return r


def acknowledge_request(
    db: sqlite_utils.Database, rid: int, *, actor: str, ip: str | None = None
) -> None:
    db.execute(
        "UPDATE privacy_requests SET status = 'acknowledged', acknowledged_at = ?, updated_at = ?"
        " WHERE id = ? AND status = 'open'",
        [now_iso(), now_iso(), rid],
    )
    audit(db, actor, "privacy_request_ack", f"request:{rid}", None, ip)


def close_request(
    db: sqlite_utils.Database,
    rid: int,
    status: str,
    note: str,
    *,
    actor: str,
    ip: str | None = None,
) -> None:
    """Done or refused. The full number is dropped: the request keeps its hash and mask."""
    if status not in ("done", "refused"):
        raise PrivacyError(f"Trạng thái không hợp lệ: {status!r}")
    if status == "refused" and not note.strip():
        raise PrivacyError("Từ chối cần ghi rõ lý do (a refusal needs a reason)")
    db.execute(
        "UPDATE privacy_requests SET status = ?, closed_at = ?, number = NULL,"
        " note = TRIM(COALESCE(note, '') || char(10) || ?), updated_at = ? WHERE id = ?",
        [status, now_iso(), note.strip()[:2000], now_iso(), rid],
    )
    audit(db, actor, "privacy_request_close", f"request:{rid}", {"status": status}, ip)


# --- audited access --------------------------------------------------------------------------------


def audit_access(
    db: sqlite_utils.Database,
    actor: str,
    action: str,
    target: str,
    ip: str | None = None,
    *,
    dedupe: bool = True,
) -> bool:
    """Log who listened to / downloaded a recording or revealed a number, and when. A player
    fetches a recording in many Range requests; the same person on the same call within
    ACCESS_AUDIT_WINDOW is one line. Returns whether a line was written."""
    if dedupe:
        since = _iso(datetime.now(UTC) - ACCESS_AUDIT_WINDOW)
        seen = db.execute(
            "SELECT 1 FROM audit_log WHERE actor = ? AND action = ? AND target = ? AND at >= ?"
            " LIMIT 1",
            [actor, action, target, since],
        ).fetchone()
        if seen:
            return False
    audit(db, actor, action, target, None, ip)
    return True


# --- files at rest ----------------------------------------------------------------------------------


class DataPermissionError(RuntimeError):
    def __init__(self, path: Path, mode: int, data_dir: Path) -> None:
        super().__init__(
            f"{path} can be read or written by other users of this machine (mode "
            f"{stat.S_IMODE(mode):04o}). Callers' recordings and numbers must be owner-only: run "
            f"`chmod -R go-rwx {data_dir}` and start again. ({path} có thể bị người dùng khác "
            f"trên máy đọc: hãy chạy lệnh trên rồi khởi động lại.)"
        )
        self.path = path


def _data_paths(settings: Any) -> list[Path]:
    data = Path(settings.data_dir)
    paths = [data]
    for name in ("hotline.db", "hotline.db-wal", "hotline.db-shm"):
        paths.append(data / name)
    paths.extend(data.glob("*secret*"))
    paths.extend(data.glob("*token*"))
    rec = Path(settings.recordings_dir)
    paths.append(rec)
    if rec.is_dir():
        paths.extend(rec.iterdir())
    return [p for p in paths if p.exists()]


def _reachable_by_others(path: Path) -> bool:
    """Whether other users can get to `path` at all: every directory above it must let them
    through (a 0755 data directory inside a 0700 home is still private)."""
    for parent in path.resolve().parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def check_data_permissions(settings: Any) -> None:
    """Raise DataPermissionError naming the first path under the data directory (the
    directory itself, the database, secrets, recordings) that other users can read or write."""
    for p in _data_paths(settings):
        mode = p.lstat().st_mode
        if mode & (stat.S_IROTH | stat.S_IWOTH) and _reachable_by_others(p):
            raise DataPermissionError(p, mode, Path(settings.data_dir))


def secure_data_dir(settings: Any) -> int:
    """Owner-only from now on: umask 077 for every file this process creates (recordings,
    database, exports), and 0700/0600 on what is already there. Returns how many modes changed."""
    os.umask(0o077)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    Path(settings.recordings_dir).mkdir(parents=True, exist_ok=True)
    changed = 0
    for p in _data_paths(settings):
        want = 0o700 if p.is_dir() else 0o600
        if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) != want:
            p.chmod(want)
            changed += 1
    return changed
