"""Ticket deadlines in Vietnamese working days: weekends and public holidays (Tết) don't count;
urgent reports get the short deadline; overdue tickets are listed most late first."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotline.store import open_db
from hotline.tickets import store as ts
from hotline.tickets.cli import tickets
from hotline.tickets.deadlines import DeadlineError, Deadlines
from hotline.tickets.routing import DEFAULT_PATH, Router, RoutingError
from hotline.workdays import add_working_days, is_working_day

DEADLINES = Deadlines.load(DEFAULT_PATH.with_name("deadlines.yml"))


def local(iso: str) -> str:
    """UTC ISO -> 'YYYY-MM-DD HH:MM' in Vietnam (UTC+7)."""
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%d %H:%M")


def test_a_weekend_is_not_counted() -> None:
    # Friday 4 Dec 2026, 10:00 in Quảng Trị (03:00 UTC): 1 working day -> Monday 17:00.
    assert local(
        Deadlines(urgent=1).due_at("report_disaster", "urgent", "2026-12-04T03:00:00Z")
    ) == ("2026-12-07 17:00")
    # Saturday evening counts from Monday: 3 working days -> Wednesday 17:00.
    assert local(DEADLINES.due_at("report_environment", "normal", "2026-12-05T12:00:00Z")) == (
        "2026-12-09 17:00"
    )


def test_tet_is_not_counted() -> None:
    # Tết Bính Ngọ: Monday 16 to Friday 20 February 2026 are public holidays.
    assert not is_working_day(datetime(2026, 2, 17).date())
    # Confirmed Friday 13 Feb 2026, 09:00: 3 working days are Mon 23, Tue 24, Wed 25 Feb.
    due = DEADLINES.due_at("report_infrastructure", "normal", "2026-02-13T02:00:00Z")
    assert local(due) == "2026-02-25 17:00"
    assert add_working_days(datetime(2026, 2, 13).date(), 1).isoformat() == "2026-02-23"


def test_urgent_reports_get_the_short_deadline() -> None:
    assert DEADLINES.days_for("report_administration", "normal") == 5
    assert DEADLINES.days_for("report_administration", "urgent") == 1
    assert DEADLINES.days_for("something_new") == DEADLINES.default


def test_a_bad_deadlines_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(DeadlineError, match="categories: unknown"):
        Deadlines.from_dict({"categories": {"report_weather": 2}})
    with pytest.raises(DeadlineError, match="default: a number of working days"):
        Deadlines.from_dict({"default": 0})
    (tmp_path / "routing.yml").write_text(DEFAULT_PATH.read_text(encoding="utf-8"), "utf-8")
    (tmp_path / "deadlines.yml").write_text("default: many\n", encoding="utf-8")
    with pytest.raises(RoutingError, match="deadlines.yml: default"):
        Router.load(tmp_path / "routing.yml")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    router = Router.load(DEFAULT_PATH)
    db = open_db(tmp_path / "hotline.db")
    try:
        for n, (category, priority) in enumerate(
            [
                ("report_utilities", "normal"),
                ("report_administration", "urgent"),
                ("report_environment", "normal"),
            ]
        ):
            tid = ts.create_draft(
                db,
                call_sid=f"CA{n}",
                caller="+84905123456",
                category=category,
                description=f"phản ánh {n}",
                priority=priority,
            )
            ts.confirm_ticket(db, tid, router)
    finally:
        db.conn.close()
    return tmp_path


def test_confirmation_stores_the_due_time(data_dir: Path) -> None:
    db = open_db(data_dir / "hotline.db")
    rows = {r["category"]: r for r in ts.list_tickets(db)}
    for category, days in (("report_utilities", 2), ("report_administration", 1)):
        row = rows[category]
        confirmed_on = datetime.fromisoformat(local(row["confirmed_at"])).date()
        expected = add_working_days(confirmed_on, days)
        assert local(row["due_at"]) == f"{expected.isoformat()} 17:00"
    # The urgent administration report is due before the normal utilities one.
    assert rows["report_administration"]["due_at"] < rows["report_utilities"]["due_at"]


def test_overdue_lists_open_late_tickets_most_late_first(data_dir: Path) -> None:
    db = open_db(data_dir / "hotline.db")
    rows = {r["category"]: r for r in ts.list_tickets(db)}
    # Three weeks later everything is late; the resolved one is not "overdue".
    code_env = rows["report_environment"]["code"]
    ts.set_status(db, code_env, "đã tiếp nhận", actor="t")
    ts.set_status(db, code_env, "đang xử lý", actor="t")
    ts.set_status(db, code_env, "đã xử lý", actor="t", note="Đã dọn")
    later = ts.list_tickets(db, overdue=True, now="2099-01-01T00:00:00Z")
    assert [r["category"] for r in later] == ["report_administration", "report_utilities"]
    assert ts.list_tickets(db, overdue=True) == []  # nothing is late yet
    db.execute(
        "UPDATE tickets SET due_at = '2020-01-01T10:00:00.000Z' WHERE code = ?",
        [rows["report_utilities"]["code"]],
    )
    db.conn.commit()
    db.conn.close()

    out = CliRunner().invoke(
        tickets, ["list", "--overdue", "--json"], env={"HOTLINE_DATA_DIR": str(data_dir)}
    )
    assert out.exit_code == 0, out.output
    assert [r["code"] for r in json.loads(out.stdout)] == [rows["report_utilities"]["code"]]
    text = CliRunner().invoke(
        tickets, ["list", "--overdue"], env={"HOTLINE_DATA_DIR": str(data_dir)}
    )
    assert "Hạn xử lý" in text.stdout and "2020-01-01 17:00" in text.stdout


def test_not_satisfied_reopens_and_restarts_the_deadline(tmp_path: Path) -> None:
    router = Router.load(DEFAULT_PATH)
    db = open_db(tmp_path / "hotline.db")
    tid = ts.create_draft(
        db, call_sid=None, caller="+84905123456", category="report_utilities", description="x"
    )
    code = ts.confirm_ticket(db, tid, router)["code"]
    db.execute("UPDATE tickets SET due_at = '2020-01-01T10:00:00.000Z' WHERE id = ?", [tid])
    for status in ("đã tiếp nhận", "đang xử lý", "đã xử lý"):
        ts.set_status(db, code, status, actor="t", note="Đã sửa")
    with pytest.raises(ts.TicketError):
        ts.rate_ticket(db, "0000000", satisfied=True)
    t = ts.rate_ticket(db, code, satisfied=False, comment="vẫn mất điện", router=router)
    assert t["status"] == "đang xử lý" and t["rating"] == 0 and t["resolved_at"] is None
    assert t["due_at"] > "2026"  # counted again from the re-opening
    assert [h["action"] for h in t["history"]][-2:] == ["rating", "status"]
    assert "vẫn mất điện" in t["history"][-1]["note"]
    with pytest.raises(ts.TicketError):  # only a resolved ticket can be rated
        ts.rate_ticket(db, code, satisfied=True)


def test_console_queue_and_dashboard_show_deadlines_and_satisfaction(tmp_path: Path) -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    from hotline.console import queries

    router = Router.load(DEFAULT_PATH)
    db = open_db(tmp_path / "hotline.db")
    codes = []
    for n in range(3):
        tid = ts.create_draft(
            db,
            call_sid=None,
            caller="+84905123456",
            category="report_utilities",
            description=f"{n}",
        )
        codes.append(ts.confirm_ticket(db, tid, router)["code"])
    late, on_time, open_late = codes
    for code in (late, on_time):
        for status in ("đã tiếp nhận", "đang xử lý", "đã xử lý"):
            ts.set_status(db, code, status, actor="t", note="xong")
    # `late` was due long before it was resolved; `open_late` is past due and still open.
    db.execute(
        "UPDATE tickets SET due_at = '2020-01-01T10:00:00.000Z' WHERE code IN (?, ?)",
        [late, open_late],
    )
    ts.rate_ticket(db, on_time, satisfied=True)
    ts.rate_ticket(db, late, satisfied=False, router=router)  # re-opened: open again
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    f = queries.parse_ticket_filter({"overdue": "1"}, {})
    # The re-opened `late` ticket got a fresh deadline: only `open_late` is overdue.
    assert [r["code"] for r in queries.list_tickets(db, f, tz=tz)] == [open_late]
    row = next(r for r in queries.list_tickets(db, f, tz=tz) if r["code"] == open_late)
    text, overdue = queries.due_text(row)
    assert overdue and text.startswith("quá hạn")
    d = queries.dashboard(db, date(2026, 1, 1), datetime.now(tz).date(), tz)
    assert (d.satisfied, d.rated) == (1, 2) and d.satisfaction == 0.5
    assert (d.on_time, d.with_deadline) == (1, 1)  # `late` was re-opened: not resolved now
    assert sum(n for _, n in d.overdue_by_agency) >= 1
