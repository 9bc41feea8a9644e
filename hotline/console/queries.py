"""What the console pages read: filtered call and ticket lists, and the dashboard's figures.

Filters arrive as strings from the query string and are checked here; a bad one raises
BadInput with a Vietnamese message (the page answers 400, never 500). Dates are the operations
centre's local dates (settings.timezone); the database stores UTC.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from hotline.nlu.train import INTENTS
from hotline.tickets.store import CLOSED, RESOLVED, STATUSES, TicketError, parse_status

OUTCOME_LABELS: dict[str, str] = {
    "ticket": "Tạo phản ánh",
    "message": "Để lại lời nhắn",
    "answered": "Máy đã giải đáp",
    "status_given": "Đã báo kết quả phiếu",
    "emergency": "Khẩn cấp",
    "transferred": "Chuyển người trực",
    "goodbye": "Chào rồi gác máy",
    "no_input": "Không nói gì",
    "abandoned": "Bỏ dở",
    "not_answered": "Không kết nối",
}

HANGUP_LABELS: dict[str, str] = {
    "stop": "người gọi gác máy",
    "socket_closed": "mất kết nối",
    "bot_hangup": "tổng đài kết thúc",
    "goodbye": "chào và kết thúc",
    "no_input": "người gọi im lặng",
    "transfer": "đã chuyển máy",
    "shutdown": "máy chủ dừng",
    "server_error": "lỗi máy chủ",
}

# The dashboard's groups (what the operations centre reports on).
OUTCOME_GROUPS: dict[str, tuple[str, ...]] = {
    "Máy tự giải đáp": ("answered", "status_given", "emergency"),
    "Thành phản ánh": ("ticket", "message"),
    "Chuyển người trực": ("transferred",),
    "Bỏ dở / không nói": ("abandoned", "no_input"),
}

CATEGORY_LABELS: dict[str, str] = {
    "report_utilities": "Điện, nước",
    "report_infrastructure": "Đường sá, hạ tầng",
    "report_environment": "Môi trường",
    "report_public_order": "Trật tự công cộng",
    "report_disaster": "Thiên tai",
    "report_administration": "Thủ tục hành chính",
    "report_health": "Y tế",
    "voice_message": "Lời nhắn ngoài giờ",
    "keypad_report": "Phản ánh bằng phím",
}

FILTER_INTENTS: tuple[str, ...] = (*INTENTS, "nlu_fallback", "nlu_down")
AGES: dict[str, tuple[str, int]] = {
    "1": ("Quá 1 ngày", 1),
    "3": ("Quá 3 ngày", 3),
    "7": ("Quá 7 ngày", 7),
    "30": ("Quá 30 ngày", 30),
}
DEFAULT_LOW_CONFIDENCE = 0.6
PAGE_SIZE = 50


class BadInput(ValueError):
    """A filter or form value the console refuses; the message is Vietnamese."""


def shown(value: str, limit: int = 40) -> str:
    """A refused value as quoted back in a message: short, whatever was sent."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def parse_date(value: str | None, what: str) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    # A year far away would overflow the day arithmetic; nobody needs one.
    if day is None or not 2000 <= day.year <= 2200:
        raise BadInput(
            f"{what} không hợp lệ: “{shown(value)}” (dạng năm-tháng-ngày, ví dụ 2026-11-27)"
        )
    return day


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[str, str]:
    """A local calendar day as [start, end) in the database's UTC text form."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)

    def fmt(dt: datetime) -> str:
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return fmt(start), fmt(end)


def parse_int(value: str | None, what: str, *, default: int, lo: int, hi: int) -> int:
    value = (value or "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise BadInput(f"{what} phải là một số nguyên") from None
    if not lo <= n <= hi:
        raise BadInput(f"{what} phải từ {lo} đến {hi}")
    return n


def to_local(iso: str | None, tz: ZoneInfo) -> datetime | None:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(tz)


# --- calls ------------------------------------------------------------------------------------


@dataclass
class CallFilter:
    date_from: date | None = None
    date_to: date | None = None
    outcome: str = ""
    intent: str = ""
    low: bool = False
    threshold: float = DEFAULT_LOW_CONFIDENCE
    page: int = 1

    def query_string(self, **override: Any) -> str:
        from urllib.parse import urlencode

        values = {
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "outcome": self.outcome,
            "intent": self.intent,
            "low": "1" if self.low else "",
            "conf": f"{self.threshold:g}" if self.low else "",
            "page": str(self.page) if self.page > 1 else "",
        }
        values.update({k: str(v) for k, v in override.items()})
        return urlencode({k: v for k, v in values.items() if v})


def parse_call_filter(params: dict[str, str]) -> CallFilter:
    f = CallFilter(
        date_from=parse_date(params.get("from"), "Ngày bắt đầu"),
        date_to=parse_date(params.get("to"), "Ngày kết thúc"),
        page=parse_int(params.get("page"), "Trang", default=1, lo=1, hi=100000),
    )
    if f.date_from and f.date_to and f.date_from > f.date_to:
        raise BadInput("Ngày bắt đầu phải trước hoặc bằng ngày kết thúc")
    outcome = (params.get("outcome") or "").strip()
    if outcome and outcome not in OUTCOME_LABELS:
        raise BadInput(f"Kết quả cuộc gọi không hợp lệ: “{shown(outcome)}”")
    intent = (params.get("intent") or "").strip()
    if intent and intent not in FILTER_INTENTS:
        raise BadInput(f"Ý định không hợp lệ: “{shown(intent)}”")
    f.outcome, f.intent = outcome, intent
    f.low = (params.get("low") or "").strip().lower() in ("1", "on", "true", "yes")
    conf = (params.get("conf") or "").strip().replace(",", ".")
    if conf:
        try:
            f.threshold = float(conf)
        except ValueError:
            raise BadInput("Ngưỡng độ tin cậy phải là một số từ 0 đến 1") from None
        if not 0.0 < f.threshold <= 1.0 or f.threshold != f.threshold:
            raise BadInput("Ngưỡng độ tin cậy phải là một số từ 0 đến 1")
    return f


def list_calls(
    db: sqlite_utils.Database, f: CallFilter, tz: ZoneInfo
) -> tuple[list[dict[str, Any]], bool]:
    """A page of calls, newest first, and whether there is a next page."""
    where: list[str] = []
    params: list[Any] = []
    if f.date_from:
        where.append("c.started_at >= ?")
        params.append(local_day_bounds(f.date_from, tz)[0])
    if f.date_to:
        where.append("c.started_at < ?")
        params.append(local_day_bounds(f.date_to, tz)[1])
    if f.outcome:
        where.append("c.outcome = ?")
        params.append(f.outcome)
    if f.intent:
        where.append(
            "EXISTS (SELECT 1 FROM turns t WHERE t.call_sid = c.call_sid AND t.speaker = 'caller'"
            " AND t.intent = ?)"
        )
        params.append(f.intent)
    if f.low:
        where.append(
            "EXISTS (SELECT 1 FROM turns t WHERE t.call_sid = c.call_sid AND t.speaker = 'caller'"
            " AND t.intent_confidence IS NOT NULL AND t.intent_confidence < ?)"
        )
        params.append(f.threshold)
    sql = (
        "SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.call_sid = c.call_sid"
        " AND t.speaker = 'caller') AS caller_turns,"
        " (SELECT MIN(t.intent_confidence) FROM turns t WHERE t.call_sid = c.call_sid"
        " AND t.speaker = 'caller') AS min_confidence,"
        " (SELECT GROUP_CONCAT(DISTINCT t.intent) FROM turns t WHERE t.call_sid = c.call_sid"
        " AND t.speaker = 'caller' AND t.intent IS NOT NULL) AS intents"
        " FROM calls c"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY c.started_at DESC, c.call_sid LIMIT ? OFFSET ?"
    params += [PAGE_SIZE + 1, (f.page - 1) * PAGE_SIZE]
    rows = list(db.query(sql, params))
    for r in rows:
        r["intent_list"] = (
            sorted(set((r.get("intents") or "").split(","))) if r.get("intents") else []
        )
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


# --- tickets ----------------------------------------------------------------------------------


@dataclass
class TicketFilter:
    status: str = ""
    category: str = ""
    agency: str = ""
    age: str = ""
    drafts: bool = False
    oldest_first: bool = False

    def as_dict(self) -> dict[str, str]:
        return {
            "status": self.status,
            "category": self.category,
            "agency": self.agency,
            "age": self.age,
            "drafts": "1" if self.drafts else "",
            "sort": "oldest" if self.oldest_first else "",
        }

    def query_string(self) -> str:
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in self.as_dict().items() if v})


def parse_ticket_filter(params: dict[str, str], agencies: dict[str, str]) -> TicketFilter:
    f = TicketFilter()
    status = (params.get("status") or "").strip()
    if status == "open":
        f.status = "open"
    elif status:
        try:
            f.status = parse_status(status[:40])
        except TicketError as exc:
            raise BadInput(exc.message_vi) from None
    category = (params.get("category") or "").strip()
    if category and category not in CATEGORY_LABELS:
        raise BadInput(f"Lĩnh vực không hợp lệ: “{shown(category)}”")
    agency = (params.get("agency") or "").strip()
    if agency and agency not in agencies:
        raise BadInput(f"Cơ quan không có trong bảng phân công: “{shown(agency)}”")
    age = (params.get("age") or "").strip()
    if age and age not in AGES:
        raise BadInput(f"Thời gian tồn đọng không hợp lệ: “{shown(age)}”")
    sort = (params.get("sort") or "").strip()
    if sort not in ("", "newest", "oldest"):
        raise BadInput(f"Cách sắp xếp không hợp lệ: “{shown(sort)}”")
    f.category, f.agency, f.age = category, agency, age
    f.drafts = (params.get("drafts") or "").strip() in ("1", "on", "true")
    f.oldest_first = sort == "oldest"
    return f


def list_tickets(
    db: sqlite_utils.Database, f: TicketFilter, limit: int = 300
) -> list[dict[str, Any]]:
    where = ["confirmed = ?"]
    params: list[Any] = [0 if f.drafts else 1]
    if f.status == "open":
        where.append("status NOT IN (?, ?)")
        params += sorted(CLOSED)
    elif f.status:
        where.append("status = ?")
        params.append(f.status)
    if f.category:
        where.append("category = ?")
        params.append(f.category)
    if f.agency:
        where.append("(agency_code = ? OR substr(agency_code, 1, ?) = ?)")
        params += [f.agency, len(f.agency) + 1, f.agency + ":"]
    if f.age:
        cutoff = datetime.now(UTC) - timedelta(days=AGES[f.age][1])
        where.append("COALESCE(confirmed_at, created_at) <= ?")
        params.append(cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        if not f.status:
            # "How long has it waited" means open tickets; closed ones are not waiting.
            where.append("(status IS NULL OR status NOT IN (?, ?))")
            params += sorted(CLOSED)
    order = "ASC" if f.oldest_first else "DESC"
    sql = (
        f"SELECT * FROM tickets WHERE {' AND '.join(where)}"
        f" ORDER BY COALESCE(confirmed_at, created_at) {order}, id {order} LIMIT ?"
    )
    params.append(limit)
    return list(db.query(sql, params))


def age_text(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return ""
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, ((now or datetime.now(UTC)) - then).total_seconds())
    return duration_text(seconds)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    if minutes < 1:
        return "dưới 1 phút"
    if minutes < 60:
        return f"{minutes} phút"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} giờ {minutes} phút" if minutes else f"{hours} giờ"
    days, hours = divmod(hours, 24)
    return f"{days} ngày {hours} giờ" if hours else f"{days} ngày"


# --- dashboard --------------------------------------------------------------------------------


@dataclass
class Dashboard:
    date_from: date
    date_to: date
    calls_per_day: list[tuple[str, int]] = field(default_factory=list)
    total_calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    groups: list[tuple[str, int]] = field(default_factory=list)
    categories: list[tuple[str, int]] = field(default_factory=list)
    open_by_agency: list[tuple[str, int]] = field(default_factory=list)
    tickets_opened: int = 0
    open_tickets: int = 0
    resolved: int = 0
    median_resolution_s: float | None = None


def parse_range(params: dict[str, str], tz: ZoneInfo, default_days: int = 30) -> tuple[date, date]:
    today = datetime.now(tz).date()
    d_from = parse_date(params.get("from"), "Ngày bắt đầu")
    d_to = parse_date(params.get("to"), "Ngày kết thúc") or today
    d_from = d_from or d_to - timedelta(days=default_days - 1)
    if d_from > d_to:
        raise BadInput("Ngày bắt đầu phải trước hoặc bằng ngày kết thúc")
    if (d_to - d_from).days > 366:
        raise BadInput("Khoảng thời gian tối đa là một năm")
    return d_from, d_to


def _seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    try:
        start = datetime.fromisoformat(a.replace("Z", "+00:00"))
        end = datetime.fromisoformat(b.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (end - start).total_seconds())


def dashboard(db: sqlite_utils.Database, d_from: date, d_to: date, tz: ZoneInfo) -> Dashboard:
    start, _ = local_day_bounds(d_from, tz)
    _, end = local_day_bounds(d_to, tz)
    out = Dashboard(d_from, d_to)
    per_day: dict[date, int] = {}
    outcomes: dict[str, int] = {}
    for row in db.query(
        "SELECT started_at, outcome FROM calls WHERE started_at >= ? AND started_at < ?",
        [start, end],
    ):
        local = to_local(row["started_at"], tz)
        if local is not None:
            per_day[local.date()] = per_day.get(local.date(), 0) + 1
        key = row["outcome"] or "abandoned"
        outcomes[key] = outcomes.get(key, 0) + 1
    day = d_from
    while day <= d_to:
        out.calls_per_day.append((day.strftime("%d/%m"), per_day.get(day, 0)))
        day += timedelta(days=1)
    out.total_calls = sum(outcomes.values())
    out.outcomes = dict(sorted(outcomes.items(), key=lambda kv: -kv[1]))
    grouped = {name: sum(outcomes.get(o, 0) for o in keys) for name, keys in OUTCOME_GROUPS.items()}
    other = out.total_calls - sum(grouped.values())
    out.groups = list(grouped.items()) + ([("Khác", other)] if other else [])
    cats = db.query(
        "SELECT category, COUNT(*) AS n FROM tickets WHERE confirmed = 1 AND confirmed_at >= ?"
        " AND confirmed_at < ? GROUP BY category ORDER BY n DESC, category LIMIT 10",
        [start, end],
    )
    out.categories = [
        (CATEGORY_LABELS.get(r["category"], r["category"] or "—"), r["n"]) for r in cats
    ]
    out.tickets_opened = sum(n for _, n in out.categories)
    agencies = db.query(
        "SELECT agency_name, COUNT(*) AS n FROM tickets WHERE confirmed = 1 AND status NOT IN (?, ?)"
        " GROUP BY agency_name ORDER BY n DESC, agency_name LIMIT 15",
        sorted(CLOSED),
    )
    out.open_by_agency = [(r["agency_name"] or "—", r["n"]) for r in agencies]
    out.open_tickets = sum(n for _, n in out.open_by_agency)
    durations = [
        s
        for r in db.query(
            "SELECT confirmed_at, resolved_at FROM tickets WHERE confirmed = 1 AND status = ?"
            " AND resolved_at >= ? AND resolved_at < ?",
            [RESOLVED, start, end],
        )
        if (s := _seconds_between(r["confirmed_at"], r["resolved_at"])) is not None
    ]
    out.resolved = len(durations)
    out.median_resolution_s = statistics.median(durations) if durations else None
    return out


def status_options() -> list[tuple[str, str]]:
    return [("open", "Chưa xong (mọi trạng thái mở)")] + [(s, s.capitalize()) for s in STATUSES]


def pretty_json(value: str | None) -> str:
    if not value:
        return ""
    try:
        return json.dumps(json.loads(value), ensure_ascii=False, indent=2, sort_keys=True)
    except (ValueError, TypeError):
        return value
