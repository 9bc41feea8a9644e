"""The ticket store on a real SQLite file: drafts, confirmation, lifecycle, history, export."""

from __future__ import annotations

import itertools
import sqlite3
import unicodedata
from pathlib import Path

import pytest
import sqlite_utils

from hotline.store import Store, open_db
from hotline.tickets import store as ts
from hotline.tickets.codes import clean_code, is_valid, make_code
from hotline.tickets.routing import DEFAULT_PATH, Router

DONG_HA = {"name": "Phường Đông Hà", "code": "19333", "province": "Tỉnh Quảng Trị"}
KHE_SANH = {"name": "Xã Khe Sanh", "code": "19429"}


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load(DEFAULT_PATH)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hotline.db"


@pytest.fixture
def db(db_path: Path) -> sqlite_utils.Database:
    database = open_db(db_path)
    yield database
    database.conn.close()


def make_ticket(db: sqlite_utils.Database, router: Router, **over: object) -> dict:
    fields: dict = {
        "call_sid": "CA" + "1" * 32,
        "caller": "+84905123456",
        "category": "report_utilities",
        "description": "Mất điện từ sáng đến giờ",
        "location_raw": "ở phường Đông Hà",
        "location": DONG_HA,
    }
    fields.update(over)
    ticket_id = ts.create_draft(db, **fields)
    return ts.confirm_ticket(db, ticket_id, router)


def advance(db: sqlite_utils.Database, code: str, *path: str) -> None:
    for status in path:
        note = "lý do" if status == ts.REJECTED else None
        ts.set_status(db, code, status, note=note, actor="test")


# --- drafts ----------------------------------------------------------------------------------


def test_draft_is_stored_without_code_and_listed(db: sqlite_utils.Database, db_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "Đường bị ngập, cây đổ")
    ticket_id = ts.create_draft(
        db,
        call_sid="CAdraft",
        caller="+84912000111",
        category="report_infrastructure",
        description=nfd,
        location_raw="thôn Bốn",
        recording_path=Path("/data/recordings/CAdraft.wav"),
    )
    # Committed on its own: another connection (the console) sees it at once.
    other = open_db(db_path)
    drafts = ts.list_drafts(other)
    other.conn.close()
    assert [d["id"] for d in drafts] == [ticket_id]
    draft = drafts[0]
    assert draft["code"] is None and draft["confirmed"] == 0 and draft["status"] is None
    assert draft["description"] == unicodedata.normalize("NFC", nfd) != nfd
    assert draft["recording_path"] == "/data/recordings/CAdraft.wav"
    assert ts.list_tickets(db) == []  # not a ticket until confirmed

    ts.update_draft(db, ticket_id, location=KHE_SANH, location_raw="Khe Sanh")
    got = ts.get_ticket_by_id(db, ticket_id)
    assert got is not None
    assert (got["location_unit"], got["location_code"]) == ("Xã Khe Sanh", "19429")
    assert got["location"] == KHE_SANH
    assert [h["action"] for h in got["history"]] == ["created"]

    with pytest.raises(TypeError):
        ts.update_draft(db, ticket_id, status="mới")
    with pytest.raises(ts.TicketError) as err:
        ts.update_draft(db, 999, description="x")
    assert err.value.kind == "not_found"


def test_confirm_assigns_valid_code_agency_and_status(
    db: sqlite_utils.Database, router: Router, db_path: Path
) -> None:
    ticket = make_ticket(db, router)
    assert is_valid(ticket["code"]) and len(ticket["code"]) == 7
    assert ticket["confirmed"] == 1 and ticket["status"] == "mới"
    assert ticket["agency_code"] == "dien_luc_quang_tri"
    assert ticket["agency_name"] == "Công ty Điện lực Quảng Trị"
    assert ticket["location_unit"] == "Phường Đông Hà" and ticket["location_code"] == "19333"
    assert ticket["confirmed_at"] and ticket["created_at"] <= ticket["confirmed_at"]
    actions = [(h["action"], h["to_status"]) for h in ticket["history"]]
    assert actions == [("created", None), ("confirmed", "mới")]
    assert ticket["history"][1]["detail"]["code"] == ticket["code"]

    # Idempotent: a retried confirmation keeps the code and adds nothing.
    again = ts.confirm_ticket(db, ticket["id"], router)
    assert again["code"] == ticket["code"] and len(again["history"]) == 2

    # On disk: a fresh connection finds it by code.
    db.conn.close()
    reopened = open_db(db_path)
    assert ts.get_ticket(reopened, ticket["code"])["description"] == "Mất điện từ sáng đến giờ"
    reopened.conn.close()

    with pytest.raises(ts.TicketError) as err:
        ts.update_draft(open_db(db_path), ticket["id"], description="sửa")
    assert err.value.kind == "not_draft"


def test_routing_is_applied_on_confirmation(db: sqlite_utils.Database, router: Router) -> None:
    water = make_ticket(db, router, description="Nhà tôi mất nước ba ngày")
    assert water["agency_code"] == "nuoc_sach_quang_tri"
    branch = make_ticket(db, router, location=KHE_SANH)
    assert branch["agency_code"] == "dien_luc_huong_hoa"
    commune = make_ticket(db, router, category="report_public_order", description="đánh nhau")
    assert (commune["agency_code"], commune["agency_name"]) == (
        "cong_an_xa:19333",
        "Công an phường Đông Hà",
    )
    keypad = make_ticket(
        db, router, category="keypad_report", description=None, location=None, channel="keypad"
    )
    assert keypad["agency_code"] == "ioc" and keypad["channel"] == "keypad"


def test_codes_are_unique_across_many_tickets(db: sqlite_utils.Database, router: Router) -> None:
    codes = [make_ticket(db, router)["code"] for _ in range(300)]
    assert len(set(codes)) == 300
    # The unique index is the last guard: a duplicate code is refused by SQLite itself.
    draft = ts.create_draft(db, call_sid=None, caller=None, category=None, description="x")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE tickets SET code = ? WHERE id = ?", [codes[0], draft])


# --- lookup and misheard codes ----------------------------------------------------------------


def test_misheard_code_is_rejected_and_never_finds_another_ticket(
    db: sqlite_utils.Database, router: Router
) -> None:
    tickets = [make_ticket(db, router, caller=f"+849050000{i:02d}") for i in range(40)]
    by_code = {t["code"]: t for t in tickets}
    for code in by_code:
        assert ts.lookup_ticket(db, code).status == "ok"
        for i, d in itertools.product(range(7), "0123456789"):
            if d == code[i]:
                continue
            misheard = code[:i] + d + code[i + 1 :]
            result = ts.lookup_ticket(db, misheard)
            assert result.status == "invalid_code" and result.ticket is None, (code, misheard)
            assert ts.get_ticket(db, misheard) is None
        for i in range(6):
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
            if swapped != code:
                assert ts.lookup_ticket(db, swapped).status == "invalid_code"


def test_lookup_outcomes(db: sqlite_utils.Database, router: Router) -> None:
    ticket = make_ticket(db, router)
    code = ticket["code"]
    spaced = f"{code[:3]} {code[3:]}"
    assert ts.get_ticket(db, spaced)["id"] == ticket["id"]
    ok = ts.lookup_ticket(db, f"{code[:2]}-{code[2:]}")
    assert ok.status == "ok" and ok.ticket["id"] == ticket["id"] and ok.code == code
    # Well-formed but never issued (first digit 0 is never issued).
    unissued = make_code("0" + code[1:6])
    assert ts.lookup_ticket(db, unissued).status == "not_found"
    assert ts.lookup_ticket(db, "12").status == "invalid_code"
    assert ts.lookup_ticket(db, "").status == "invalid_code"
    # A draft has no code and is not found by one.
    draft = ts.create_draft(db, call_sid="CA", caller=None, category=None, description="x")
    assert ts.get_ticket_by_id(db, draft)["code"] is None


# --- lifecycle ---------------------------------------------------------------------------------

# The shortest way to reach each status from "mới".
PATH_TO = {
    ts.NEW: (),
    ts.RECEIVED: (ts.RECEIVED,),
    ts.IN_PROGRESS: (ts.RECEIVED, ts.IN_PROGRESS),
    ts.RESOLVED: (ts.RECEIVED, ts.IN_PROGRESS, ts.RESOLVED),
    ts.REJECTED: (ts.REJECTED,),
}
ALLOWED = {
    (ts.NEW, ts.RECEIVED),
    (ts.NEW, ts.REJECTED),
    (ts.RECEIVED, ts.IN_PROGRESS),
    (ts.RECEIVED, ts.REJECTED),
    (ts.IN_PROGRESS, ts.RESOLVED),
    (ts.IN_PROGRESS, ts.REJECTED),
    (ts.RESOLVED, ts.IN_PROGRESS),
}


@pytest.mark.parametrize(("start", "target"), list(itertools.product(ts.STATUSES, ts.STATUSES)))
def test_every_transition_allowed_or_refused(
    db: sqlite_utils.Database, router: Router, start: str, target: str
) -> None:
    ticket = make_ticket(db, router)
    code = ticket["code"]
    advance(db, code, *PATH_TO[start])
    before = ts.get_ticket(db, code)
    assert before["status"] == start
    note = "Đã khắc phục xong" if target != ts.REJECTED else "Trùng với phiếu khác"
    if (start, target) in ALLOWED:
        after = ts.set_status(db, code, target, note=note, actor="nva")
        assert after["status"] == target
        last = after["history"][-1]
        assert (
            last["action"],
            last["from_status"],
            last["to_status"],
            last["actor"],
            last["note"],
        ) == (
            "status",
            start,
            target,
            "nva",
            note,
        )
        assert bool(after["resolved_at"]) == (target in (ts.RESOLVED, ts.REJECTED))
    else:
        with pytest.raises(ts.TicketError) as err:
            ts.set_status(db, code, target, note=note, actor="nva")
        assert err.value.kind == "bad_transition"
        assert start in err.value.message_vi and code in err.value.message_vi
        assert "ticket" in err.value.message_en
        after = ts.get_ticket(db, code)
        assert after["status"] == start and after["history"] == before["history"]


def test_reopening_clears_resolved_at(db: sqlite_utils.Database, router: Router) -> None:
    code = make_ticket(db, router)["code"]
    advance(db, code, ts.RECEIVED, ts.IN_PROGRESS, ts.RESOLVED)
    assert ts.get_ticket(db, code)["resolved_at"]
    reopened = ts.set_status(db, code, "dang xu ly", note="Người dân báo lại mất điện", actor="nva")
    assert reopened["status"] == ts.IN_PROGRESS and reopened["resolved_at"] is None


def test_rejection_needs_a_reason(db: sqlite_utils.Database, router: Router) -> None:
    code = make_ticket(db, router)["code"]
    with pytest.raises(ts.TicketError) as err:
        ts.set_status(db, code, "từ chối", actor="nva")
    assert err.value.kind == "bad_input" and "lý do" in err.value.message_vi
    assert ts.get_ticket(db, code)["status"] == ts.NEW


@pytest.mark.parametrize(
    ("typed", "status"),
    [
        ("da tiep nhan", ts.RECEIVED),
        ("Đã tiếp nhận", ts.RECEIVED),
        ("DANG XU LY", ts.IN_PROGRESS),
        ("dang-xu-ly", ts.IN_PROGRESS),
        ("đã_xử_lý", ts.RESOLVED),
        ("da xu ly", ts.RESOLVED),
        ("  moi ", ts.NEW),
        ("tu choi", ts.REJECTED),
        ("resolved", ts.RESOLVED),
        (unicodedata.normalize("NFD", "đang xử lý"), ts.IN_PROGRESS),
    ],
)
def test_status_spellings(typed: str, status: str) -> None:
    assert ts.parse_status(typed) == status


@pytest.mark.parametrize("typed", ["xong", "", "đã xử", "closed"])
def test_unknown_status(typed: str) -> None:
    with pytest.raises(ts.TicketError) as err:
        ts.parse_status(typed)
    assert err.value.kind == "bad_status"
    assert (
        "Trạng thái không hợp lệ" in err.value.message_vi
        and "unknown status" in err.value.message_en
    )


def test_operations_on_unknown_or_invalid_codes(db: sqlite_utils.Database, router: Router) -> None:
    code = make_ticket(db, router)["code"]
    misheard = code[:3] + str((int(code[3]) + 1) % 10) + code[4:]
    for fn in (
        lambda c: ts.set_status(db, c, "da tiep nhan", actor="x"),
        lambda c: ts.add_comment(db, c, "ghi chú", actor="x"),
        lambda c: ts.assign_agency(db, c, "so_y_te", "Sở Y tế", actor="x"),
    ):
        with pytest.raises(ts.TicketError) as err:
            fn(misheard)
        assert err.value.kind == "invalid_code"
        with pytest.raises(ts.TicketError) as err:
            fn(make_code("012345"))
        assert err.value.kind == "not_found"
    assert ts.get_ticket(db, code)["history"][-1]["action"] == "confirmed"


# --- history, comments, agencies ---------------------------------------------------------------


def test_history_records_every_change(db: sqlite_utils.Database, router: Router) -> None:
    code = make_ticket(db, router)["code"]
    ts.set_status(db, code, "da tiep nhan", actor="nva", note="Đã chuyển cho đội sửa chữa")
    ts.add_comment(db, code, "Người gọi rất bức xúc", actor="ttb")
    ts.assign_agency(
        db, code, "dien_luc_huong_hoa", "Điện lực Hướng Hóa", actor="nva", note="Đúng địa bàn"
    )
    ts.set_status(db, code, "đang xử lý", actor="dlhh")
    ticket = ts.set_status(
        db, code, "đã xử lý", actor="dlhh", note="Đã thay dây, có điện lại lúc 15 giờ"
    )

    rows = [
        (h["action"], h["actor"], h["from_status"], h["to_status"], h["note"])
        for h in ticket["history"]
    ]
    assert rows == [
        ("created", "hotline", None, None, None),
        ("confirmed", "hotline", None, "mới", None),
        ("status", "nva", "mới", "đã tiếp nhận", "Đã chuyển cho đội sửa chữa"),
        ("comment", "ttb", None, None, "Người gọi rất bức xúc"),
        ("assign", "nva", None, None, "Đúng địa bàn"),
        ("status", "dlhh", "đã tiếp nhận", "đang xử lý", None),
        ("status", "dlhh", "đang xử lý", "đã xử lý", "Đã thay dây, có điện lại lúc 15 giờ"),
    ]
    assign = ticket["history"][4]["detail"]
    assert (
        assign["from"]["code"] == "dien_luc_quang_tri"
        and assign["to"]["name"] == "Điện lực Hướng Hóa"
    )
    assert ticket["agency_code"] == "dien_luc_huong_hoa"
    times = [h["at"] for h in ticket["history"]]
    assert times == sorted(times)
    # What a caller asking about the ticket hears: the latest status note, never a comment.
    assert ts.latest_note(ticket) == "Đã thay dây, có điện lại lúc 15 giờ"
    ts.add_comment(db, code, "nội bộ: gọi lại sau", actor="ttb")
    ticket = ts.get_ticket(db, code)
    assert ts.latest_note(ticket) == "Đã thay dây, có điện lại lúc 15 giờ"
    assert ts.latest_note(ticket, include_comments=True) == "nội bộ: gọi lại sau"


def test_latest_note_none_and_empty_comment(db: sqlite_utils.Database, router: Router) -> None:
    ticket = make_ticket(db, router)
    assert ts.latest_note(ticket) is None
    with pytest.raises(ts.TicketError):
        ts.add_comment(db, ticket["code"], "   ", actor="x")
    with pytest.raises(ts.TicketError):
        ts.add_comment(db, ticket["code"], "ok", actor="")


def test_list_filters(db: sqlite_utils.Database, router: Router) -> None:
    power = make_ticket(db, router)
    water = make_ticket(db, router, description="mất nước")
    order = make_ticket(db, router, category="report_public_order", description="gây rối")
    order2 = make_ticket(
        db, router, category="report_public_order", description="gây rối", location=KHE_SANH
    )
    ts.create_draft(db, call_sid="CAx", caller=None, category="report_health", description="nháp")
    advance(db, water["code"], ts.RECEIVED)

    def codes(**kw: object) -> set[str | None]:
        return {t["code"] for t in ts.list_tickets(db, **kw)}

    assert codes() == {power["code"], water["code"], order["code"], order2["code"]}
    assert codes(status="da tiep nhan") == {water["code"]}
    assert codes(category="report_public_order") == {order["code"], order2["code"]}
    assert codes(agency="cong_an_xa") == {order["code"], order2["code"]}
    assert codes(agency="cong_an_xa:19429") == {order2["code"]}
    assert codes(agency="cong_an") == set()  # a prefix of a code is not the code
    assert codes(confirmed=None) == codes() | {None}
    assert len(ts.list_tickets(db, limit=2)) == 2
    newest_first = [t["id"] for t in ts.list_tickets(db)]
    assert newest_first == sorted(newest_first, reverse=True)


# --- export ----------------------------------------------------------------------------------------


def test_export_rows(db: sqlite_utils.Database, router: Router) -> None:
    ticket = make_ticket(db, router, description="Cây đổ chắn ngang đường")
    ts.set_status(db, ticket["code"], "da tiep nhan", actor="nva", note="Đã báo đội công trình")
    ts.create_draft(db, call_sid="CAy", caller="+84900000000", category=None, description="nháp")
    rows = ts.export_rows(db)
    assert len(rows) == 1
    row = rows[0]
    assert tuple(row) == ts.EXPORT_COLUMNS
    assert row["caller"] == "+84905123456"  # operators' export: full number
    assert row["description"] == "Cây đổ chắn ngang đường"
    assert row["latest_note"] == "Đã báo đội công trình"
    assert len(ts.export_rows(db, include_drafts=True)) == 2


# --- integration with the service's Store and migration ---------------------------------------------


def test_through_the_service_store(db_path: Path, router: Router) -> None:
    store = Store(db_path)
    try:
        ticket_id = store.run(
            lambda db: ts.create_draft(
                db,
                call_sid="CAz",
                caller="+84905111222",
                category="report_disaster",
                description="Lũ lên nhanh",
            )
        )
        ticket = store.run_durable(lambda db: ts.confirm_ticket(db, ticket_id, router))
        assert ticket["agency_code"] == "pthds"
    finally:
        store.close()
    other = open_db(db_path)
    assert ts.get_ticket(other, ticket["code"])["status"] == "mới"
    other.conn.close()


def test_refused_change_leaves_nothing_behind_inside_an_outer_transaction(
    db: sqlite_utils.Database, router: Router
) -> None:
    code = make_ticket(db, router)["code"]
    with db.atomic():
        ts.add_comment(db, code, "trước", actor="x")
        with pytest.raises(ts.TicketError):
            ts.set_status(db, code, "đã xử lý", actor="x")
    history = ts.get_ticket(db, code)["history"]
    assert [h["action"] for h in history] == ["created", "confirmed", "comment"]


def test_old_database_is_migrated(db_path: Path, router: Router) -> None:
    # A tickets table from an earlier version, without most columns and with a row in it.
    old = sqlite_utils.Database(db_path)
    old.table("tickets").create({"id": int, "code": str, "description": str}, pk="id")
    old.table("tickets").insert({"id": 1, "code": make_code("777777"), "description": "cũ"})
    old.conn.close()
    db = open_db(db_path)
    try:
        assert {"confirmed", "agency_code", "sms_sent_at", "location_json"} <= set(
            db.table("tickets").columns_dict
        )
        assert list(db.query("SELECT confirmed, description FROM tickets")) == [
            {"confirmed": 0, "description": "cũ"}
        ]
        assert clean_code(make_ticket(db, router)["code"])
    finally:
        db.conn.close()


def test_a_caller_cancelled_draft_is_kept_marked_and_cannot_be_confirmed_twice(
    db: sqlite_utils.Database, router: Router
) -> None:
    tid = ts.create_draft(
        db,
        call_sid="CA1",
        caller="+84905000001",
        category="report_utilities",
        description="mất điện",
        priority="urgent",
    )
    ts.cancel_draft(db, tid, reason="caller")
    row = ts.get_ticket_by_id(db, tid)
    assert row["closed_at"] and row["close_reason"] == "caller" and row["priority"] == "urgent"
    assert [h["action"] for h in row["history"]] == ["created", "cancelled"]
    assert tid in [d["id"] for d in ts.list_drafts(db)]  # still visible to operators
    confirmed = ts.confirm_ticket(
        db,
        ts.create_draft(
            db, call_sid="CA1", caller="+84905000001", category="report_utilities", description="x"
        ),
        router,
    )
    with pytest.raises(ts.TicketError):
        ts.cancel_draft(db, confirmed["id"], reason="caller")  # a ticket is not a draft
    with pytest.raises(ts.TicketError):
        ts.create_draft(
            db, call_sid=None, caller=None, category="x", description="", priority="vip"
        )
