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
    "overflow": "Quá tải — để lại lời nhắn",
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

# Audit log actions as the admin page shows them.
AUDIT_LABELS: dict[str, str] = {
    "login": "Đăng nhập",
    "login_failed": "Đăng nhập sai",
    "login_locked": "Đăng nhập khi đang bị khóa",
    "login_lockout": "Tạm khóa vì sai nhiều lần",
    "logout": "Đăng xuất",
    "operator_add": "Tạo tài khoản",
    "operator_role": "Đổi vai trò",
    "operator_disable": "Khóa tài khoản",
    "operator_enable": "Mở khóa tài khoản",
    "operator_password": "Đổi mật khẩu",
    "test_call": "Gọi thử",
    "tickets_export": "Tải danh sách phiếu",
    "corrections_export": "Tải nhãn sửa",
    "nlu_correction": "Sửa nhãn máy hiểu",
    "ticket_status": "Đổi trạng thái phiếu",
    "ticket_comment": "Ghi chú nội bộ",
    "ticket_assign": "Giao cơ quan",
    "ticket_category": "Đổi lĩnh vực phiếu",
    "draft_confirm": "Tạo phiếu từ bản nháp",
    "draft_close": "Đóng phiếu nháp",
    "caller_number_shown": "Xem số để gọi lại",
    "retrain": "Bắt đầu huấn luyện lại",
    "templates_save": "Sửa mẫu câu trả lời",
}

# The dashboard's groups (what the operations centre reports on).
OUTCOME_GROUPS: dict[str, tuple[str, ...]] = {
    "Máy tự giải đáp": ("answered", "status_given", "emergency"),
    "Thành phản ánh": ("ticket", "message"),
    "Chuyển người trực": ("transferred",),
    "Bỏ dở / không nói": ("abandoned", "no_input"),
    # Past HOTLINE_MAX_CALLS: busy prompt and a voice message (hotline/telephony/admission.py).
    "Quá tải — để lại lời nhắn": ("overflow",),
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
    tests: str = ""  # "" all calls, labelled; "hide" without test calls; "only" test calls

    def query_string(self, **override: Any) -> str:
        from urllib.parse import urlencode

        values = {
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "outcome": self.outcome,
            "intent": self.intent,
            "low": "1" if self.low else "",
            "conf": f"{self.threshold:g}" if self.low else "",
            "tests": self.tests,
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
    f.threshold = parse_threshold(params.get("conf"), f.threshold)
    tests = (params.get("tests") or "").strip()
    if tests not in ("", "hide", "only"):
        raise BadInput(f"Lựa chọn cuộc gọi thử không hợp lệ: “{shown(tests)}”")
    f.tests = tests
    return f


def parse_threshold(value: str | None, default: float) -> float:
    """'0.5', '0,5', '50' and '50%' all mean half."""
    conf = (value or "").strip().replace(",", ".")
    if not conf:
        return default
    percent = conf.endswith("%")
    conf = conf.rstrip("%").strip()
    msg = "Ngưỡng độ tin cậy phải là một số từ 0 đến 1, hoặc phần trăm như 50%"
    try:
        n = float(conf)
    except ValueError:
        raise BadInput(msg) from None
    if n != n:
        raise BadInput(msg)
    if percent or 1.0 < n <= 100.0:
        n /= 100.0
    if not 0.0 < n <= 1.0:
        raise BadInput(msg)
    return n


def _date_where(
    col: str, d_from: date | None, d_to: date | None, tz: ZoneInfo
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if d_from:
        where.append(f"{col} >= ?")
        params.append(local_day_bounds(d_from, tz)[0])
    if d_to:
        where.append(f"{col} < ?")
        params.append(local_day_bounds(d_to, tz)[1])
    return where, params


def list_calls(
    db: sqlite_utils.Database, f: CallFilter, tz: ZoneInfo
) -> tuple[list[dict[str, Any]], int]:
    """A page of calls, newest first, and how many calls match in all."""
    from hotline.console.search import TEST_CALL_SQL

    where, params = _date_where("c.started_at", f.date_from, f.date_to, tz)
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
    if f.tests == "hide":
        where.append(f"NOT {TEST_CALL_SQL}")
    elif f.tests == "only":
        where.append(TEST_CALL_SQL)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    total = db.execute(f"SELECT COUNT(*) FROM calls c{cond}", params).fetchone()[0]
    sql = (
        f"SELECT c.*, {TEST_CALL_SQL} AS is_test,"
        " (SELECT MIN(t.intent_confidence) FROM turns t WHERE t.call_sid = c.call_sid"
        " AND t.speaker = 'caller') AS min_confidence"
        f" FROM calls c{cond} ORDER BY c.started_at DESC, c.call_sid LIMIT ? OFFSET ?"
    )
    rows = list(db.query(sql, [*params, PAGE_SIZE, (f.page - 1) * PAGE_SIZE]))
    return annotate_calls(db, rows), total


REPORT_INTENTS = frozenset(k for k in CATEGORY_LABELS if k.startswith("report_"))


def annotate_calls(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each call was about, in words: its category, the caller's first sentence, the place.

    The category is the ticket's when the call made one (operators may have corrected it),
    else the first report or question intent the caller's turns had (corrections win)."""
    from hotline.console.corrections import INTENT_LABELS

    if not rows:
        return rows
    sids = [r["call_sid"] for r in rows]
    marks = ",".join("?" for _ in sids)
    firsts: dict[str, str] = {}
    intents: dict[str, str] = {}
    for t in db.query(
        "SELECT t.call_sid, t.text, t.kind, t.intent,"
        " (SELECT k.corrected_intent FROM nlu_corrections k WHERE k.turn_id = t.id ORDER BY k.id DESC"
        " LIMIT 1) AS fixed"
        f" FROM turns t WHERE t.call_sid IN ({marks}) AND t.speaker = 'caller' ORDER BY t.seq",
        sids,
    ):
        sid = t["call_sid"]
        if t["kind"] == "speech" and t["text"] and sid not in firsts:
            firsts[sid] = t["text"]
        intent = t["fixed"] or t["intent"]
        if (
            sid not in intents
            and intent
            and (intent in REPORT_INTENTS or intent.startswith("ask_") or intent == "emergency")
        ):
            intents[sid] = intent
    tickets: dict[str, dict[str, Any]] = {}
    for t in db.query(
        "SELECT id, call_sid, code, confirmed, category, location_raw, location_unit, status"
        f" FROM tickets WHERE call_sid IN ({marks}) ORDER BY confirmed, id",
        sids,
    ):
        tickets[t["call_sid"]] = t
    for r in rows:
        sid = r["call_sid"]
        ticket = tickets.get(sid)
        category = (ticket or {}).get("category") or intents.get(sid) or ""
        r["category"] = category
        r["category_label"] = CATEGORY_LABELS.get(category) or INTENT_LABELS.get(category, "")
        r["first_words"] = firsts.get(sid, "")
        r["place"] = (ticket or {}).get("location_unit") or (ticket or {}).get("location_raw") or ""
        r["ticket"] = ticket
        r["is_test"] = bool(r.get("is_test"))
    return rows


def range_text(page: int, total: int, size: int = PAGE_SIZE) -> str:
    """'1–50 / 329' (en dash), or '0 / 0'."""
    if total <= 0:
        return "0 / 0"
    first = (page - 1) * size + 1
    last = min(page * size, total)
    if first > total:
        return f"— / {total}"
    return f"{first}–{last} / {total}"


def shortcuts(tz: ZoneInfo) -> list[tuple[str, str, str]]:
    """The date range shortcuts: label, from, to (local dates)."""
    today = datetime.now(tz).date()
    return [
        ("Hôm nay", today.isoformat(), today.isoformat()),
        ("7 ngày", (today - timedelta(days=6)).isoformat(), today.isoformat()),
        ("30 ngày", (today - timedelta(days=29)).isoformat(), today.isoformat()),
    ]


# --- tickets ----------------------------------------------------------------------------------


@dataclass
class TicketFilter:
    status: str = ""
    category: str = ""
    agency: str = ""
    age: str = ""
    drafts: bool = False
    oldest_first: bool = False
    date_from: date | None = None
    date_to: date | None = None
    mine: bool = False
    tests: bool = False  # include tickets from test calls (left out by default)
    closed_drafts: bool = False
    overdue: bool = False  # open tickets past their deadline
    page: int = 1

    def as_dict(self) -> dict[str, str]:
        return {
            "status": self.status,
            "category": self.category,
            "agency": self.agency,
            "age": self.age,
            "drafts": "1" if self.drafts else "",
            "sort": "oldest" if self.oldest_first else "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "mine": "1" if self.mine else "",
            "tests": "1" if self.tests else "",
            "closed": "1" if self.closed_drafts else "",
            "overdue": "1" if self.overdue else "",
        }

    def query_string(self, **override: Any) -> str:
        from urllib.parse import urlencode

        values = self.as_dict()
        values["page"] = str(self.page) if self.page > 1 else ""
        values.update({k: str(v) for k, v in override.items()})
        return urlencode({k: v for k, v in values.items() if v})


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
    f.date_from = parse_date(params.get("from"), "Ngày bắt đầu")
    f.date_to = parse_date(params.get("to"), "Ngày kết thúc")
    if f.date_from and f.date_to and f.date_from > f.date_to:
        raise BadInput("Ngày bắt đầu phải trước hoặc bằng ngày kết thúc")
    f.mine = (params.get("mine") or "").strip() in ("1", "on", "true")
    f.tests = (params.get("tests") or "").strip() in ("1", "on", "true")
    f.closed_drafts = (params.get("closed") or "").strip() in ("1", "on", "true")
    f.overdue = (params.get("overdue") or "").strip() in ("1", "on", "true")
    f.page = parse_int(params.get("page"), "Trang", default=1, lo=1, hi=100000)
    return f


def _ticket_where(f: TicketFilter, tz: ZoneInfo | None, actor: str | None) -> tuple[str, list[Any]]:
    from hotline.console.search import test_call_sql

    where = ["t.confirmed = ?"]
    params: list[Any] = [0 if f.drafts else 1]
    if f.drafts and not f.closed_drafts:
        where.append("t.status IS NULL")  # a closed draft has a status and leaves the list
    if f.status == "open":
        where.append("t.status NOT IN (?, ?)")
        params += sorted(CLOSED)
    elif f.status:
        where.append("t.status = ?")
        params.append(f.status)
    if f.category:
        where.append("t.category = ?")
        params.append(f.category)
    if f.agency:
        where.append("(t.agency_code = ? OR substr(t.agency_code, 1, ?) = ?)")
        params += [f.agency, len(f.agency) + 1, f.agency + ":"]
    if f.age:
        cutoff = datetime.now(UTC) - timedelta(days=AGES[f.age][1])
        where.append("COALESCE(t.confirmed_at, t.created_at) <= ?")
        params.append(cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        if not f.status:
            # "How long has it waited" means open tickets; closed ones are not waiting.
            where.append("(t.status IS NULL OR t.status NOT IN (?, ?))")
            params += sorted(CLOSED)
    if tz is not None:
        w, p = _date_where("COALESCE(t.confirmed_at, t.created_at)", f.date_from, f.date_to, tz)
        where += w
        params += p
    if f.overdue:
        where.append("t.due_at IS NOT NULL AND t.due_at < ? AND t.status NOT IN (?, ?)")
        params += [datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")]
        params += sorted(CLOSED)
    if f.mine and actor:
        where.append(
            "EXISTS (SELECT 1 FROM ticket_history h WHERE h.ticket_id = t.id AND h.actor = ?)"
        )
        params.append(actor)
    if not f.tests:
        where.append(
            "NOT (COALESCE(t.caller, '') LIKE 'console:%' OR EXISTS (SELECT 1 FROM calls c"
            f" WHERE c.call_sid = t.call_sid AND {test_call_sql('c')}))"
        )
    return " AND ".join(where), params


def list_tickets(
    db: sqlite_utils.Database,
    f: TicketFilter,
    limit: int = PAGE_SIZE,
    *,
    tz: ZoneInfo | None = None,
    actor: str | None = None,
    offset: int | None = None,
) -> list[dict[str, Any]]:
    where, params = _ticket_where(f, tz, actor)
    order = "ASC" if f.oldest_first else "DESC"
    if offset is None:
        offset = (f.page - 1) * limit
    sql = (
        f"SELECT t.* FROM tickets t WHERE {where}"
        f" ORDER BY COALESCE(t.confirmed_at, t.created_at) {order}, t.id {order} LIMIT ? OFFSET ?"
    )
    return list(db.query(sql, [*params, limit, offset]))


def count_tickets(
    db: sqlite_utils.Database,
    f: TicketFilter,
    *,
    tz: ZoneInfo | None = None,
    actor: str | None = None,
) -> int:
    where, params = _ticket_where(f, tz, actor)
    return int(db.execute(f"SELECT COUNT(*) FROM tickets t WHERE {where}", params).fetchone()[0])


def due_text(ticket: dict[str, Any], now: datetime | None = None) -> tuple[str, bool]:
    """("còn 2 ngày" | "quá hạn 5 giờ" | "", overdue?) for an open ticket with a deadline."""
    due = ticket.get("due_at")
    if not due or ticket.get("status") in CLOSED or not ticket.get("confirmed"):
        return "", False
    now = now or datetime.now(UTC)
    left = (datetime.fromisoformat(due.replace("Z", "+00:00")) - now).total_seconds()
    span = duration_text(abs(left))
    return (f"còn {span}", False) if left >= 0 else (f"quá hạn {span}", True)


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
    per_hour: list[int] = field(default_factory=lambda: [0] * 24)
    contained: int = 0
    prev_total: int = 0
    prev_contained: int = 0
    age_bands: list[tuple[str, int, str]] = field(default_factory=list)  # label, n, age filter
    on_time: int = 0  # tickets resolved in the period by their deadline
    with_deadline: int = 0  # tickets resolved in the period that had one
    overdue_by_agency: list[tuple[str, int]] = field(default_factory=list)
    satisfied: int = 0  # residents' ratings given in the period
    rated: int = 0
    open_agency_codes: list[str] = field(default_factory=list)
    category_codes: list[str] = field(default_factory=list)
    test_calls: int = 0
    overflow: int = 0  # calls past HOTLINE_MAX_CALLS: they never reached the bot
    overflow_messages: int = 0  # ...of which left a voice message that became a ticket
    prev_overflow: int = 0

    @property
    def bot_calls(self) -> int:
        """The calls the bot took: containment's denominator."""
        return self.total_calls - self.overflow

    @property
    def containment(self) -> float | None:
        return self.contained / self.bot_calls if self.bot_calls else None

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.with_deadline if self.with_deadline else None

    @property
    def satisfaction(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None

    @property
    def prev_containment(self) -> float | None:
        bot = self.prev_total - self.prev_overflow
        return self.prev_contained / bot if bot else None


# "Calls finished without a person": the bot answered the question, gave a ticket's status, or
# made a ticket the caller confirmed with the bot alone (not one an operator confirmed later).
# Emergencies, transfers, messages, hang-ups and silence are not bot-handled.
CONTAINED_OUTCOMES = ("answered", "status_given")
CONTAINMENT_DEFINITION = (
    "Tỉ lệ cuộc gọi xong mà không cần người: máy đã giải đáp, đã báo kết quả phiếu, hoặc máy"
    " tự tạo phiếu được người gọi xác nhận; chia cho mọi cuộc gọi (trừ cuộc gọi thử)."
    " Cuộc gọi khẩn cấp, chuyển người trực, để lại lời nhắn, bỏ dở hay không nói đều không tính"
    " là máy tự xử lý. Cuộc gọi quá tải (mọi đường dây bận, chỉ để lại lời nhắn) không tới máy"
    " trả lời nên không tính vào tỉ lệ này."
)
AGE_BANDS: tuple[tuple[str, int, int | None, str], ...] = (
    ("Dưới 1 ngày", 0, 1, ""),
    ("1–3 ngày", 1, 3, "1"),
    ("3–7 ngày", 3, 7, "3"),
    ("7–30 ngày", 7, 30, "7"),
    ("Trên 30 ngày", 30, None, "30"),
)


def _calls_in(db: sqlite_utils.Database, start: str, end: str) -> list[dict[str, Any]]:
    from hotline.console.search import TEST_CALL_SQL

    return list(
        db.query(
            f"SELECT c.started_at, c.outcome, {TEST_CALL_SQL} AS is_test,"
            " EXISTS (SELECT 1 FROM tickets t JOIN ticket_history h ON h.ticket_id = t.id"
            " WHERE t.call_sid = c.call_sid AND h.action = 'confirmed' AND h.actor = 'hotline')"
            " AS bot_ticket, EXISTS (SELECT 1 FROM tickets t WHERE t.call_sid = c.call_sid"
            " AND t.confirmed = 1) AS has_ticket"
            " FROM calls c WHERE c.started_at >= ? AND c.started_at < ?",
            [start, end],
        )
    )


def is_contained(row: dict[str, Any]) -> bool:
    return row["outcome"] in CONTAINED_OUTCOMES or (
        row["outcome"] == "ticket" and bool(row["bot_ticket"])
    )


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
    from hotline.console.search import test_call_sql

    start, _ = local_day_bounds(d_from, tz)
    _, end = local_day_bounds(d_to, tz)
    out = Dashboard(d_from, d_to)
    per_day: dict[date, int] = {}
    outcomes: dict[str, int] = {}
    for row in _calls_in(db, start, end):
        if row["is_test"]:
            out.test_calls += 1
            continue
        local = to_local(row["started_at"], tz)
        if local is not None:
            per_day[local.date()] = per_day.get(local.date(), 0) + 1
            out.per_hour[local.hour] += 1
        key = row["outcome"] or "abandoned"
        outcomes[key] = outcomes.get(key, 0) + 1
        out.contained += is_contained(row)
        if key == "overflow":
            out.overflow += 1
            out.overflow_messages += bool(row["has_ticket"])
    # The period before, as long as this one.
    days = (d_to - d_from).days + 1
    p_start, _ = local_day_bounds(d_from - timedelta(days=days), tz)
    for row in _calls_in(db, p_start, start):
        if not row["is_test"]:
            out.prev_total += 1
            out.prev_contained += is_contained(row)
            out.prev_overflow += row["outcome"] == "overflow"
    day = d_from
    while day <= d_to:
        out.calls_per_day.append((day.strftime("%d/%m"), per_day.get(day, 0)))
        day += timedelta(days=1)
    out.total_calls = sum(outcomes.values())
    out.outcomes = dict(sorted(outcomes.items(), key=lambda kv: -kv[1]))
    grouped = {name: sum(outcomes.get(o, 0) for o in keys) for name, keys in OUTCOME_GROUPS.items()}
    other = out.total_calls - sum(grouped.values())
    out.groups = list(grouped.items()) + ([("Khác", other)] if other else [])
    not_test = (
        "NOT (COALESCE(t.caller, '') LIKE 'console:%' OR EXISTS (SELECT 1 FROM calls c"
        f" WHERE c.call_sid = t.call_sid AND {test_call_sql('c')}))"
    )
    cats = list(
        db.query(
            "SELECT t.category, COUNT(*) AS n FROM tickets t WHERE t.confirmed = 1"
            f" AND t.confirmed_at >= ? AND t.confirmed_at < ? AND {not_test}"
            " GROUP BY t.category ORDER BY n DESC, t.category LIMIT 10",
            [start, end],
        )
    )
    out.categories = [
        (CATEGORY_LABELS.get(r["category"], r["category"] or "—"), r["n"]) for r in cats
    ]
    out.category_codes = [r["category"] or "" for r in cats]
    out.tickets_opened = sum(n for _, n in out.categories)
    agencies = list(
        db.query(
            "SELECT t.agency_code, t.agency_name, COUNT(*) AS n FROM tickets t"
            f" WHERE t.confirmed = 1 AND t.status NOT IN (?, ?) AND {not_test}"
            " GROUP BY t.agency_name ORDER BY n DESC, t.agency_name LIMIT 15",
            sorted(CLOSED),
        )
    )
    out.open_by_agency = [(r["agency_name"] or "—", r["n"]) for r in agencies]
    out.open_agency_codes = [(r["agency_code"] or "").split(":")[0] for r in agencies]
    out.open_tickets = sum(n for _, n in out.open_by_agency)
    now = datetime.now(UTC)
    bands = [0] * len(AGE_BANDS)
    for r in db.query(
        "SELECT COALESCE(t.confirmed_at, t.created_at) AS since FROM tickets t"
        f" WHERE t.confirmed = 1 AND t.status NOT IN (?, ?) AND {not_test}",
        sorted(CLOSED),
    ):
        age = _seconds_between(r["since"], now.isoformat())
        if age is None:
            continue
        age_days = age / 86400
        for i, (_, lo, hi, _) in enumerate(AGE_BANDS):
            if age_days >= lo and (hi is None or age_days < hi):
                bands[i] += 1
                break
    out.age_bands = [
        (label, n, key) for (label, _, _, key), n in zip(AGE_BANDS, bands, strict=True)
    ]
    durations = [
        s
        for r in db.query(
            "SELECT t.confirmed_at, t.resolved_at FROM tickets t WHERE t.confirmed = 1"
            f" AND t.status = ? AND t.resolved_at >= ? AND t.resolved_at < ? AND {not_test}",
            [RESOLVED, start, end],
        )
        if (s := _seconds_between(r["confirmed_at"], r["resolved_at"])) is not None
    ]
    out.resolved = len(durations)
    out.median_resolution_s = statistics.median(durations) if durations else None
    for r in db.query(
        "SELECT t.resolved_at <= t.due_at AS on_time FROM tickets t WHERE t.confirmed = 1"
        f" AND t.status = ? AND t.due_at IS NOT NULL AND t.resolved_at >= ? AND t.resolved_at < ?"
        f" AND {not_test}",
        [RESOLVED, start, end],
    ):
        out.with_deadline += 1
        out.on_time += bool(r["on_time"])
    overdue = list(
        db.query(
            "SELECT t.agency_name, COUNT(*) AS n FROM tickets t WHERE t.confirmed = 1"
            f" AND t.status NOT IN (?, ?) AND t.due_at < ? AND {not_test}"
            " GROUP BY t.agency_name ORDER BY n DESC, t.agency_name LIMIT 15",
            [*sorted(CLOSED), now.isoformat(timespec="milliseconds").replace("+00:00", "Z")],
        )
    )
    out.overdue_by_agency = [(r["agency_name"] or "—", r["n"]) for r in overdue]
    for r in db.query(
        "SELECT t.rating FROM tickets t WHERE t.rating IS NOT NULL"
        f" AND t.rated_at >= ? AND t.rated_at < ? AND {not_test}",
        [start, end],
    ):
        out.rated += 1
        out.satisfied += r["rating"] == 1
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
