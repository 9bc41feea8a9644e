"""`hotline tickets ...`: list, show, change and export field-report tickets.

Caller numbers: `list` masks them (a list is what ends up on a shared screen or in a chat);
`show` and `export` print them in full, because an operator following up a single ticket, or
the agency receiving the export, needs to call the person back.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import sqlite_utils

import hotline.schema  # noqa: F401  (registers every table)
from hotline import outbox
from hotline.calls import mask_number
from hotline.config import ConfigError, load_settings
from hotline.store import open_db
from hotline.tickets import incidents
from hotline.tickets import store as ts
from hotline.tickets.codes import format_code
from hotline.tickets.routing import CATEGORY_LABELS

# Refusals that mean "you typed it wrong" exit 2, like click's usage errors; refusals about the
# ticket's state (not found, transition not allowed) exit 1.
_USAGE_KINDS = {"invalid_code", "bad_status", "bad_input"}


def _fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _ticket_error(exc: ts.TicketError) -> None:
    _fail(f"Lỗi: {exc.message_vi}\nError: {exc.message_en}", 2 if exc.kind in _USAGE_KINDS else 1)


@contextmanager
def _open(*, must_exist: bool = True) -> Iterator[tuple[sqlite_utils.Database, str]]:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc), 2)
    path = settings.db_path
    if must_exist and not Path(path).exists():
        _fail(
            f"Lỗi: chưa có cơ sở dữ liệu tại {path}\n"
            f"Error: no database at {path} (set HOTLINE_DATA_DIR, or start the service once)",
            1,
        )
    db = open_db(path)
    try:
        yield db, settings.timezone
    except ts.TicketError as exc:
        _ticket_error(exc)
    finally:
        db.conn.close()


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "")
    return f"cli:{user}" if user else "cli"


def _local(ts_iso: str | None, tz_name: str) -> str:
    """'2026-11-27T02:15:00.000Z' -> '2026-11-27 09:15' in the hotline's time zone."""
    if not ts_iso:
        return ""
    try:
        moment = datetime.fromisoformat(ts_iso.replace("Z", "+00:00"))
    except ValueError:
        return ts_iso
    try:
        zone: Any = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _cut(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _category(cat: str | None) -> str:
    return CATEGORY_LABELS.get(cat or "", cat or "")


@click.group("tickets", help="Phiếu phản ánh hiện trường (field-report tickets).")
def tickets() -> None:
    pass


@tickets.command("list")
@click.option(
    "--status", help="mới | đã tiếp nhận | đang xử lý | đã xử lý | từ chối (dấu tùy chọn)"
)
@click.option("--category", help="an intent, e.g. report_utilities")
@click.option("--agency", help="agency code from routing.yml (ubnd_xa lists every commune)")
@click.option("--drafts", is_flag=True, help="unconfirmed drafts instead of tickets")
@click.option("--overdue", is_flag=True, help="open tickets past their deadline, most late first")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="JSON (caller numbers still masked)")
def list_cmd(
    status: str | None,
    category: str | None,
    agency: str | None,
    drafts: bool,
    overdue: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List tickets, newest first (--overdue: most late first). Caller numbers are masked."""
    with _open() as (db, tz):
        rows = ts.list_tickets(
            db,
            status=status,
            category=category,
            agency=agency,
            confirmed=not drafts,
            overdue=overdue,
            limit=limit,
        )
    for row in rows:
        row["caller"] = mask_number(row.get("caller"))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(
            "Không có bản nháp nào."
            if drafts
            else "Không có phiếu nào quá hạn."
            if overdue
            else "Không có phiếu nào."
        )
        return
    header: tuple[str, ...]
    table: list[tuple[str, ...]]
    if drafts:
        # A draft has no code, status or agency yet; what the caller said is what matters.
        header = ("Nháp", "Loại", "Nội dung", "Địa bàn", "Người gọi", "Kênh", "Tạo lúc")
        table = [
            (
                f"#{r['id']}",
                _cut(_category(r["category"]), 20),
                _cut(r["description"], 40),
                _cut(r["location_unit"] or r["location_raw"], 22),
                r["caller"] or "",
                r["channel"] or "",
                _local(r["created_at"], tz),
            )
            for r in rows
        ]
    else:
        header = ("Mã", "Trạng thái", "Loại", "Cơ quan", "Địa bàn", "Người gọi", "Xác nhận lúc")
        header += ("Hạn xử lý",)
        table = [
            (
                format_code(r["code"]),
                r["status"] or "",
                _cut(_category(r["category"]), 20),
                _cut(r["agency_name"], 34),
                _cut(r["location_unit"] or r["location_raw"], 22),
                r["caller"] or "",
                _local(r["confirmed_at"] or r["created_at"], tz),
                _local(r["due_at"], tz) if r.get("due_at") else "",
            )
            for r in rows
        ]
    widths = [max(len(str(row[i])) for row in (header, *table)) for i in range(len(header))]
    for row in (header, *table):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    click.echo(f"({len(rows)} {'bản nháp' if drafts else 'phiếu'})")


@tickets.command("show")
@click.argument("code")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON with history and the full caller number"
)
def show_cmd(code: str, as_json: bool) -> None:
    """Show one ticket and its history (full caller number: an operator's view)."""
    with _open() as (db, tz):
        ticket = ts.require_ticket(db, code)
        ticket["outbox"] = outbox.for_ticket(db, ticket["id"])
    if as_json:
        ticket["latest_note"] = ts.latest_note(ticket)
        click.echo(json.dumps(ticket, ensure_ascii=False, indent=2))
        return
    place = ticket["location_unit"] or ""
    if ticket["location_code"]:
        place += f" ({ticket['location_code']})"
    if ticket["location_raw"]:
        place += f" — người gọi nói: “{ticket['location_raw']}”"
    lines = [
        f"Phiếu {format_code(ticket['code'])}  [{ticket['status']}]",
        f"  Loại:        {_category(ticket['category'])} ({ticket['category']})",
        f"  Cơ quan:     {ticket['agency_name']} ({ticket['agency_code']})",
        f"  Địa bàn:     {place or 'chưa rõ'}",
        f"  Nội dung:    {ticket['description'] or ''}",
        f"  Người gọi:   {ticket['caller'] or ''}",
        f"  Kênh:        {ticket['channel']}  cuộc gọi {ticket['call_sid'] or '-'}",
        f"  Ghi âm:      {ticket['recording_path'] or '-'}",
        f"  Tạo lúc:     {_local(ticket['created_at'], tz)}"
        f"   xác nhận {_local(ticket['confirmed_at'], tz)}"
        f"   cập nhật {_local(ticket['updated_at'], tz)}",
    ]
    if ticket["resolved_at"]:
        lines.append(f"  Đóng lúc:    {_local(ticket['resolved_at'], tz)}")
    if ticket["sms_sent_at"]:
        lines.append(f"  SMS gửi lúc: {_local(ticket['sms_sent_at'], tz)}")
    lines.append("  Lịch sử:")
    for h in ticket["history"]:
        lines.append(f"    {_local(h['at'], tz)}  {h['actor']:<14} {_history_text(h)}")
    if ticket["due_at"]:
        lines.insert(-1 - len(ticket["history"]), f"  Hạn xử lý:   {_local(ticket['due_at'], tz)}")
    if ticket["outbox"]:
        lines.append("  Tin nhắn gửi người phản ánh:")
        for m in ticket["outbox"]:
            when = _local(m["sent_at"] or m["created_at"], tz)
            lines.append(f"    {when}  {OUTBOX_STATES.get(m['state'], m['state']):<16} {m['body']}")
    for line in lines:
        click.echo(line)


OUTBOX_STATES = {
    "pending": "đang chờ gửi",
    "sent": "đã gửi",
    "failed": "gửi không được",
    "not_configured": "chưa cấu hình SMS",
}


def _history_text(h: dict[str, Any]) -> str:
    detail = h.get("detail") or {}
    action = h["action"]
    if action == "created":
        text = f"tạo bản nháp ({detail.get('channel', '')})"
    elif action == "confirmed":
        text = f"xác nhận → {h['to_status']}, giao {detail.get('agency_name', '')}"
    elif action == "status":
        text = f"{h['from_status']} → {h['to_status']}"
    elif action == "assign":
        text = f"chuyển từ {detail.get('from', {}).get('name')} sang {detail.get('to', {}).get('name')}"
    elif action == "comment":
        text = "ghi chú nội bộ"
    elif action == "rating":
        text = "người dân hài lòng" if detail.get("satisfied") else "người dân chưa hài lòng"
    else:
        text = action
    if h.get("note"):
        text += f": {h['note']}"
    return text


@tickets.command("set-status")
@click.argument("code")
@click.argument("status")
@click.option("--note", help="read to the caller who asks about the ticket; required to reject")
@click.option(
    "--actor", default=_default_actor, show_default="cli:$USER", help="who made the change"
)
def set_status_cmd(code: str, status: str, note: str | None, actor: str) -> None:
    """Change a ticket's status (accents optional: "da tiep nhan")."""
    with _open() as (db, _tz):
        ticket = ts.set_status(db, code, status, note=note, actor=actor)
    previous = ticket["history"][-1]["from_status"]
    click.echo(f"Phiếu {format_code(ticket['code'])}: {previous} → {ticket['status']}")


@tickets.command("comment")
@click.argument("code")
@click.argument("note")
@click.option("--actor", default=_default_actor, show_default="cli:$USER", help="who wrote it")
def comment_cmd(code: str, note: str, actor: str) -> None:
    """Add an internal note (not read to callers)."""
    with _open() as (db, _tz):
        ticket = ts.add_comment(db, code, note, actor=actor)
    click.echo(f"Phiếu {format_code(ticket['code'])}: đã thêm ghi chú")


@tickets.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), required=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="file (default: stdout)"
)
@click.option("--drafts", is_flag=True, help="include unconfirmed drafts")
def export_cmd(fmt: str, output: Path | None, drafts: bool) -> None:
    """Export every ticket, full caller numbers included (for the receiving agencies).

    CSV is UTF-8 with a byte-order mark so Excel shows Vietnamese correctly."""
    with _open() as (db, _tz):
        rows = ts.export_rows(db, include_drafts=drafts)
    if fmt == "json":
        data = (json.dumps(rows, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    else:
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=list(ts.EXPORT_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        data = buf.getvalue().encode("utf-8-sig")
    if output is None:
        click.echo(data, nl=False)  # bytes go to the binary stream: the BOM survives
        return
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(output)
    click.echo(f"Đã xuất {len(rows)} phiếu ra {output}", err=True)


@click.group("incidents", help="Sự việc: phản ánh cùng loại, cùng xã/phường, gộp lại (incidents).")
def incidents_cli() -> None:
    pass


@incidents_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def incidents_list(as_json: bool) -> None:
    """Open incidents, most reported first."""
    with _open() as (db, tz):
        rows = incidents.list_open(db)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("Không có sự việc nào đang mở.")
        return
    for r in rows:
        click.echo(
            f"#{r['id']}  {r['reports']:>4} phản ánh  {_category(r['category'])}  "
            f"{r['location_unit'] or r['location_code']}  từ {_local(r['opened_at'], tz)}"
        )


@incidents_cli.command("show")
@click.argument("incident_id", type=int)
def incidents_show(incident_id: int) -> None:
    with _open() as (db, _tz):
        incident = incidents.get(db, incident_id)
    if incident is None:
        click.echo(f"Không có sự việc số {incident_id}", err=True)
        sys.exit(2)
    click.echo(json.dumps(incident, ensure_ascii=False, indent=2))


@incidents_cli.command("resolve")
@click.argument("incident_id", type=int)
@click.option("--note", required=True, help="the result, read and texted to every reporter")
@click.option("--actor", default=_default_actor, show_default="cli:$USER")
def incidents_resolve(incident_id: int, note: str, actor: str) -> None:
    """Resolve the incident and all its open tickets; every reporter gets the SMS."""
    with _open() as (db, _tz):
        try:
            codes = incidents.resolve(db, incident_id, note=note, actor=actor)
        except KeyError:
            click.echo(f"Không có sự việc số {incident_id}", err=True)
            sys.exit(2)
    click.echo(f"Đã xử lý sự việc #{incident_id}: {len(codes)} phiếu.")


@incidents_cli.command("merge")
@click.argument("into", type=int)
@click.argument("other", type=int)
def incidents_merge(into: int, other: int) -> None:
    with _open() as (db, _tz):
        try:
            merged = incidents.merge(db, into, other)
        except KeyError:
            click.echo("Không có sự việc đó", err=True)
            sys.exit(2)
    click.echo(f"Sự việc #{into}: {merged['reports']} phản ánh.")


@incidents_cli.command("split")
@click.argument("code")
def incidents_split(code: str) -> None:
    """Take one ticket out of its incident."""
    with _open() as (db, _tz):
        ts.require_ticket(db, code)
        incidents.split(db, code)
    click.echo(f"Phiếu {format_code(code)} không còn thuộc sự việc nào.")
