"""`hotline tickets ...` through click's CliRunner, on a real database in HOTLINE_DATA_DIR."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hotline.store import open_db
from hotline.tickets import store as ts
from hotline.tickets.cli import tickets
from hotline.tickets.codes import make_code
from hotline.tickets.routing import DEFAULT_PATH, Router

CALLER = "+84905123456"
MASKED = "+84905***456"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def seeded(data_dir: Path) -> dict[str, dict]:
    """Two tickets and a draft, written the way the hotline writes them."""
    router = Router.load(DEFAULT_PATH)
    db = open_db(data_dir / "hotline.db")
    try:
        power_id = ts.create_draft(
            db,
            call_sid="CA" + "a" * 32,
            caller=CALLER,
            category="report_utilities",
            description="Mất điện cả khu phố từ 6 giờ sáng",
            location_raw="khu phố 3 phường Đông Hà",
            location={"name": "Phường Đông Hà", "code": "19333"},
        )
        power = ts.confirm_ticket(db, power_id, router)
        road_id = ts.create_draft(
            db,
            call_sid="CA" + "b" * 32,
            caller="+84912345678",
            category="report_infrastructure",
            description="Ổ gà lớn giữa đường, xe máy ngã",
            location={"name": "Xã Khe Sanh", "code": "19429"},
        )
        road = ts.confirm_ticket(db, road_id, router)
        ts.set_status(db, road["code"], "đã tiếp nhận", actor="nva", note="Đã báo xã")
        ts.create_draft(
            db,
            call_sid="CA" + "c" * 32,
            caller="+84987654321",
            category="report_health",
            description="nháp dở",
        )
    finally:
        db.conn.close()
    return {"power": power, "road": road}


def run(data_dir: Path, *args: str) -> Result:
    result = CliRunner().invoke(tickets, list(args), env={"HOTLINE_DATA_DIR": str(data_dir)})
    # Refusals are messages and exit codes, never tracebacks.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def test_list_masks_callers(data_dir: Path, seeded: dict) -> None:
    result = run(data_dir, "list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    code = seeded["power"]["code"]
    assert f"{code[:3]} {code[3:]}" in out
    assert "Công ty Điện lực Quảng Trị" in out and "UBND xã Khe Sanh" in out
    assert MASKED in out and CALLER not in out
    assert "nháp dở" not in out and "(2 phiếu)" in out

    filtered = run(data_dir, "list", "--status", "da tiep nhan", "--json")
    rows = json.loads(filtered.stdout)
    assert [r["code"] for r in rows] == [seeded["road"]["code"]]
    assert rows[0]["caller"] == "+84912***678"

    by_category = json.loads(
        run(data_dir, "list", "--category", "report_utilities", "--json").stdout
    )
    assert [r["code"] for r in by_category] == [code]

    drafts = run(data_dir, "list", "--drafts")
    assert (
        "nháp dở" in drafts.stdout
        and "+84987***321" in drafts.stdout
        and "(1 bản nháp)" in drafts.stdout
    )


def test_show_with_history_and_full_number(data_dir: Path, seeded: dict) -> None:
    code = seeded["road"]["code"]
    result = run(data_dir, "show", f"{code[:3]} {code[3:]}")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[đã tiếp nhận]" in out and "+84912345678" in out
    assert "Ổ gà lớn giữa đường" in out and "UBND xã Khe Sanh" in out
    assert "mới → đã tiếp nhận: Đã báo xã" in out

    data = json.loads(run(data_dir, "show", code, "--json").stdout)
    assert data["caller"] == "+84912345678"
    assert [h["action"] for h in data["history"]] == ["created", "confirmed", "status"]
    assert data["latest_note"] == "Đã báo xã"
    assert data["location"] == {"name": "Xã Khe Sanh", "code": "19429"}


def test_show_refuses_misheard_and_unknown_codes(data_dir: Path, seeded: dict) -> None:
    code = seeded["power"]["code"]
    misheard = code[:-2] + str((int(code[-2]) + 3) % 10) + code[-1]
    result = run(data_dir, "show", misheard)
    assert result.exit_code == 2
    assert "không hợp lệ" in result.stderr and "invalid" in result.stderr
    assert result.stdout == ""

    unissued = make_code("0" + code[1:6])
    result = run(data_dir, "show", unissued)
    assert result.exit_code == 1
    assert f"Không tìm thấy phiếu có mã {unissued}" in result.stderr


def test_set_status(data_dir: Path, seeded: dict) -> None:
    code = seeded["power"]["code"]
    result = run(
        data_dir,
        "set-status",
        code,
        "da tiep nhan",
        "--note",
        "Đội sửa chữa đang đến",
        "--actor",
        "nva",
    )
    assert result.exit_code == 0, result.output
    assert "mới → đã tiếp nhận" in result.stdout

    db = open_db(data_dir / "hotline.db")
    ticket = ts.get_ticket(db, code)
    db.conn.close()
    assert ticket["status"] == "đã tiếp nhận"
    last = ticket["history"][-1]
    assert (last["actor"], last["note"]) == ("nva", "Đội sửa chữa đang đến")

    default_actor = run(data_dir, "set-status", code, "đang xử lý")
    assert default_actor.exit_code == 0
    db = open_db(data_dir / "hotline.db")
    assert ts.get_ticket(db, code)["history"][-1]["actor"].startswith("cli")
    db.conn.close()


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("{code}", "xong"), 2, "Trạng thái không hợp lệ"),
        (("{code}", "da xu ly"), 1, "Không thể chuyển phiếu"),  # mới -> đã xử lý skips steps
        (("{code}", "tu choi"), 2, "lý do"),  # a rejection needs --note
        (("{misheard}", "da tiep nhan"), 2, "không hợp lệ"),
        (("{unissued}", "da tiep nhan"), 1, "Không tìm thấy"),
    ],
)
def test_set_status_refusals(
    data_dir: Path, seeded: dict, args: tuple, exit_code: int, message: str
) -> None:
    code = seeded["power"]["code"]
    values = {
        "code": code,
        "misheard": code[0] + str((int(code[1]) + 1) % 10) + code[2:],
        "unissued": make_code("0" + code[1:6]),
    }
    result = run(data_dir, "set-status", *(a.format(**values) for a in args))
    assert result.exit_code == exit_code, result.output
    assert message in result.stderr
    db = open_db(data_dir / "hotline.db")
    assert ts.get_ticket(db, code)["status"] == "mới"
    db.conn.close()


def test_comment(data_dir: Path, seeded: dict) -> None:
    code = seeded["power"]["code"]
    assert (
        run(
            data_dir, "comment", code, "Gọi lại cho người dân lúc 9 giờ", "--actor", "ttb"
        ).exit_code
        == 0
    )
    show = run(data_dir, "show", code).stdout
    assert "ghi chú nội bộ: Gọi lại cho người dân lúc 9 giờ" in show


def test_export_csv_round_trip(data_dir: Path, seeded: dict) -> None:
    out = data_dir / "tickets.csv"
    result = run(data_dir, "export", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the file as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    db = open_db(data_dir / "hotline.db")
    expected = ts.export_rows(db)
    db.conn.close()
    assert len(rows) == 2
    assert rows == [{k: "" if v is None else str(v) for k, v in row.items()} for row in expected]
    by_code = {r["code"]: r for r in rows}
    power = by_code[seeded["power"]["code"]]
    assert power["description"] == "Mất điện cả khu phố từ 6 giờ sáng"
    assert power["caller"] == CALLER  # the export is for the agencies: full number
    assert json.loads(power["location_json"])["name"] == "Phường Đông Hà"
    assert by_code[seeded["road"]["code"]]["latest_note"] == "Đã báo xã"


def test_export_json_round_trip_and_stdout(data_dir: Path, seeded: dict) -> None:
    result = run(data_dir, "export", "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout_bytes.decode("utf-8"))
    db = open_db(data_dir / "hotline.db")
    assert rows == ts.export_rows(db)
    db.conn.close()
    assert "Ổ gà lớn giữa đường, xe máy ngã" in result.stdout  # not \\u-escaped
    with_drafts = json.loads(run(data_dir, "export", "--format", "json", "--drafts").stdout)
    assert len(with_drafts) == 3

    csv_out = run(data_dir, "export", "--format", "csv")
    assert csv_out.stdout_bytes.startswith(b"\xef\xbb\xbf")
    assert run(data_dir, "export", "--format", "xml").exit_code == 2


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = run(tmp_path / "empty", "list")
    assert result.exit_code == 1
    assert "chưa có cơ sở dữ liệu" in result.stderr
    assert not (tmp_path / "empty" / "hotline.db").exists()  # listing creates nothing
