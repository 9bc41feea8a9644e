"""The tickets list for an office: CSV (Excel opens it) or .xlsx, with Vietnamese headers,
category and channel names instead of codes, Vietnam local time, and no server paths or JSON.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from hotline.console.queries import CATEGORY_LABELS, to_local

CHANNEL_LABELS = {
    "voice": "Gọi điện",
    "keypad": "Bấm phím",
    "voice_message": "Lời nhắn",
    "console": "Bảng điều khiển",
}
TIME_FORMAT = "%d/%m/%Y %H:%M"


def _time(tz: ZoneInfo) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        dt = to_local(value, tz)
        return dt.strftime(TIME_FORMAT) if dt else ""

    return fmt


def columns(tz: ZoneInfo) -> list[tuple[str, str, Callable[[Any], Any]]]:
    """(header, field of export_rows, how to show it)."""
    t = _time(tz)
    same: Callable[[Any], Any] = lambda v: v if v is not None else ""  # noqa: E731
    return [
        ("Mã phiếu", "code", same),
        ("Trạng thái", "status", lambda v: v or "nháp"),
        ("Lĩnh vực", "category", lambda v: CATEGORY_LABELS.get(v or "", v or "")),
        ("Cơ quan xử lý", "agency_name", same),
        ("Địa điểm (lời người gọi)", "location_raw", same),
        ("Xã/phường", "location_unit", same),
        ("Mã xã/phường", "location_code", same),
        ("Nội dung", "description", same),
        ("Số gọi", "caller", same),
        ("Kênh", "channel", lambda v: CHANNEL_LABELS.get(v or "", v or "")),
        ("Tạo lúc", "created_at", t),
        ("Xác nhận lúc", "confirmed_at", t),
        ("Cập nhật lúc", "updated_at", t),
        ("Đóng lúc", "resolved_at", t),
        ("Gửi tin nhắn lúc", "sms_sent_at", t),
        ("Lời báo gần nhất cho người gọi", "latest_note", same),
    ]


def _cell(value: Any) -> Any:
    """Spreadsheets run cells starting with = + - @ as formulas: a caller's words must not."""
    if not isinstance(value, str) or not value:
        return value
    if value[0] in "=@\t\r" or (value[0] in "+-" and not re.fullmatch(r"[+-][\d .]*", value)):
        return "'" + value
    return value


def table(rows: list[dict[str, Any]], tz: ZoneInfo) -> tuple[list[str], list[list[Any]]]:
    cols = columns(tz)
    return [h for h, _, _ in cols], [[_cell(fn(r.get(f))) for _, f, fn in cols] for r in rows]


def to_csv(rows: list[dict[str, Any]], tz: ZoneInfo) -> bytes:
    headers, body = table(rows, tz)
    buf = io.StringIO()
    buf.write("\ufeff")  # Excel opens UTF-8 Vietnamese correctly only with a BOM
    writer = csv.writer(buf)
    writer.writerow(headers)
    writer.writerows(body)
    return buf.getvalue().encode("utf-8")


def to_xlsx(rows: list[dict[str, Any]], tz: ZoneInfo) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    headers, body = table(rows, tz)
    wb = Workbook()
    ws = wb.active
    ws.title = "Phản ánh"
    ws.append(headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in body:
        ws.append(row)
    ws.freeze_panes = "A2"
    for i, header in enumerate(headers, start=1):
        width = max([len(header)] + [len(str(r[i - 1])) for r in body[:200]])
        ws.column_dimensions[ws.cell(1, i).column_letter].width = min(60, max(10, width + 2))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
