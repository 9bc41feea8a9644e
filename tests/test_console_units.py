"""The console's parts without a server: accounts and lockout, sessions, NLU corrections and
their Rasa export, filters, CSV cells and SVG charts. Real SQLite files, real argon2."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from hotline.calls import add_turn, upsert_call
from hotline.console import accounts, charts, corrections, queries
from hotline.console.export import _cell as _csv_cell
from hotline.store import open_db


@pytest.fixture()
def db(tmp_path: Path) -> Any:
    database = open_db(tmp_path / "hotline.db")
    yield database
    database.conn.close()


# --- accounts, sessions, lockout ------------------------------------------------------------


def test_operator_passwords_are_argon2_and_checked(db: Any) -> None:
    accounts.add_operator(db, "Lan.Nguyen", "operator", "mật khẩu dài", actor="test")
    row = accounts.get_operator(db, "lan.nguyen")
    assert row["username"] == "lan.nguyen"  # lowercased: typed at a login page
    assert row["password_hash"].startswith("$argon2id$")
    assert "mật khẩu" not in row["password_hash"]
    assert accounts.authenticate(db, "LAN.NGUYEN", "mật khẩu dài").ok
    # The same password typed decomposed (NFD) still matches; without its marks it does not.
    assert accounts.authenticate(db, "lan.nguyen", unicodedata.normalize("NFD", "mật khẩu dài")).ok
    assert not accounts.authenticate(db, "lan.nguyen", "mat khau dai").ok


@pytest.mark.parametrize(
    ("username", "role", "password"),
    [
        ("a", "operator", "12345678"),  # too short
        ("nguyễn", "operator", "12345678"),  # not ascii
        ("-lan", "operator", "12345678"),
        ("lan", "boss", "12345678"),
        ("lan", "operator", "1234567"),
    ],
)
def test_bad_accounts_are_refused_in_vietnamese(
    db: Any, username: str, role: str, password: str
) -> None:
    with pytest.raises(accounts.AccountError) as err:
        accounts.add_operator(db, username, role, password, actor="test")
    assert any(w in str(err.value) for w in ("Tên đăng nhập", "Vai trò", "Mật khẩu"))


def test_duplicate_and_last_admin(db: Any) -> None:
    accounts.add_operator(db, "root", "admin", "12345678", actor="test")
    with pytest.raises(accounts.AccountError, match="Đã có"):
        accounts.add_operator(db, "ROOT", "operator", "12345678", actor="test")
    with pytest.raises(accounts.AccountError, match="cuối cùng"):
        accounts.set_disabled(db, "root", True, actor="test")
    with pytest.raises(accounts.AccountError, match="cuối cùng"):
        accounts.set_role(db, "root", "operator", actor="test")
    accounts.add_operator(db, "root2", "admin", "12345678", actor="test")
    accounts.set_role(db, "root", "supervisor", actor="test")
    assert accounts.get_operator(db, "root")["role"] == "supervisor"


def test_lockout_after_five_failures_even_with_the_right_password(db: Any) -> None:
    accounts.add_operator(db, "lan", "operator", "đúng-mật-khẩu", actor="test")
    accounts.add_operator(db, "minh", "operator", "đúng-mật-khẩu", actor="test")
    results = [accounts.authenticate(db, "lan", "sai") for _ in range(5)]
    assert [r.locked_until is not None for r in results] == [False] * 4 + [True]
    locked = accounts.authenticate(db, "lan", "đúng-mật-khẩu")
    assert not locked.ok and locked.message == "locked"
    until = locked.locked_until
    assert until is not None
    assert timedelta(minutes=14) < until - datetime.now(UTC) <= timedelta(minutes=15)
    assert accounts.authenticate(db, "minh", "đúng-mật-khẩu").ok  # per username (and address)
    # Unknown names are locked the same way: a lockout does not reveal which names exist.
    for _ in range(5):
        accounts.authenticate(db, "khong-co", "x")
    assert accounts.locked_until(db, "khong-co") is not None
    # Fifteen minutes later the right password works and the counter starts again.
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    db.execute("UPDATE console_login_throttle SET locked_until = ? WHERE username = 'lan'", [past])
    assert accounts.authenticate(db, "lan", "đúng-mật-khẩu").ok
    actions = [r["action"] for r in db.query("SELECT action FROM audit_log WHERE target = 'lan'")]
    assert actions.count("login_failed") == 5 and "login_lockout" in actions


def test_sessions_expire_idle_and_end_with_password_change(db: Any) -> None:
    accounts.add_operator(db, "lan", "supervisor", "12345678", actor="test")
    token = accounts.create_session(db, "lan", ip="127.0.0.1")
    op = accounts.session_operator(db, token)
    assert op is not None and op.role == "supervisor" and len(op.csrf_token) >= 32
    # Only the hash of the token is stored.
    stored = [r["token_hash"] for r in db.query("SELECT token_hash FROM console_sessions")]
    assert token not in stored and accounts.token_hash(token) in stored
    assert accounts.session_operator(db, token + "x") is None
    # A role change applies to the open session at once.
    accounts.set_role(db, "lan", "operator", actor="test")
    assert accounts.session_operator(db, token).role == "operator"  # type: ignore[union-attr]
    # Idle for more than the limit: gone.
    old = (datetime.now(UTC) - accounts.SESSION_IDLE - timedelta(minutes=1)).isoformat()
    db.execute("UPDATE console_sessions SET last_seen_at = ?", [old.replace("+00:00", "Z")])
    assert accounts.session_operator(db, token) is None
    # Past its absolute expiry: gone.
    token = accounts.create_session(db, "lan")
    db.execute("UPDATE console_sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    assert accounts.session_operator(db, token) is None
    # A new password signs every session out; so does disabling.
    token = accounts.create_session(db, "lan")
    accounts.set_password(db, "lan", "mật khẩu mới 1", actor="test")
    assert accounts.session_operator(db, token) is None
    token = accounts.create_session(db, "lan")
    accounts.add_operator(db, "root", "admin", "12345678", actor="test")
    accounts.set_disabled(db, "lan", True, actor="root")
    assert accounts.session_operator(db, token) is None
    assert not accounts.authenticate(db, "lan", "mật khẩu mới 1").ok


# --- NLU corrections --------------------------------------------------------------------------


def _call_with_turns(db: Any) -> dict[str, int]:
    upsert_call(db, "CAtest", caller="+84905000001")
    ids = {
        "place": add_turn(
            db,
            "CAtest",
            speaker="caller",
            kind="speech",
            text="nhà tui ở thôn an hưng xã triệu phong mất điện từ sáng tới chừ",
            intent="report_infrastructure",
            intent_confidence=0.41,
        ),
        "nfd": add_turn(
            db,
            "CAtest",
            speaker="caller",
            kind="speech",
            text=unicodedata.normalize("NFD", "Cây Đổ, chắn ĐƯỜNG!"),
            intent="out_of_scope",
            intent_confidence=0.3,
        ),
        "bot": add_turn(db, "CAtest", speaker="bot", kind="prompt", text="Xin chào"),
        "dtmf": add_turn(db, "CAtest", speaker="caller", kind="dtmf", text="1"),
    }
    return ids


def test_corrections_are_checked(db: Any) -> None:
    ids = _call_with_turns(db)
    bad = [
        (ids["place"], "no_such_intent", ""),
        (ids["place"], "report_infrastructure", ""),  # nothing changed
        (ids["place"], "report_utilities", "thôn không có trong câu"),
        (ids["place"], "report_utilities", "an hư"),  # not whole words
        (ids["bot"], "greet", ""),
        (ids["dtmf"], "greet", ""),
        (999999, "greet", ""),
    ]
    for turn_id, intent, place in bad:
        with pytest.raises(corrections.CorrectionError):
            corrections.add_correction(db, turn_id, intent, place, actor="lan")
    assert not list(db.query("SELECT * FROM nlu_corrections"))


def test_export_writes_rasa_yaml_with_locations(db: Any, tmp_path: Path) -> None:
    ids = _call_with_turns(db)
    out = tmp_path / "corrections.yml"
    assert corrections.export_corrections(db, out) == 0
    assert not out.exists()  # nothing to export: no empty file for Rasa to choke on
    corrections.add_correction(db, ids["place"], "report_disaster", "", actor="lan")
    # A fix of the fix: the newest correction of a turn wins.
    corrections.add_correction(
        db, ids["place"], "report_utilities", "Thôn An Hưng xã Triệu Phong", actor="minh"
    )
    corrections.add_correction(db, ids["nfd"], "report_infrastructure", "", actor="lan")
    assert corrections.export_corrections(db, out) == 2
    text = out.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", text)
    doc = yaml.safe_load(text)
    assert doc["version"] == "3.1"
    blocks = {b["intent"]: b["examples"] for b in doc["nlu"]}
    assert set(blocks) == {"report_utilities", "report_infrastructure"}
    assert (
        "- nhà tui ở [thôn an hưng xã triệu phong](location) mất điện từ sáng tới chừ"
        in blocks["report_utilities"]
    )
    # Lowercase, NFC, punctuation gone: the training data's own form.
    assert "- cây đổ chắn đường\n" in blocks["report_infrastructure"]
    pairs = corrections.confusion(db)
    assert ("report_infrastructure", "report_utilities", 1) in pairs
    assert ("out_of_scope", "report_infrastructure", 1) in pairs
    assert all(b != "report_disaster" for _, b, _ in pairs)
    # A correction that only marks the place is not a confusion.
    tid = add_turn(
        db, "CAtest", speaker="caller", kind="speech", text="ở đông hà", intent="report_health"
    )
    corrections.add_correction(db, tid, "report_health", "đông hà", actor="lan")
    assert corrections.confusion(db) == pairs and corrections.location_only(db) == 1


def test_export_keeps_the_held_out_set_out(db: Any, tmp_path: Path) -> None:
    upsert_call(db, "CAheld", caller="+84905000002")
    held_out = "chừ mất điện nữa rồi tuần ni là lần thứ tư"  # in nlu_models/test/test_nlu.yml
    tid = add_turn(db, "CAheld", speaker="caller", kind="speech", text=held_out, intent="deny")
    corrections.add_correction(db, tid, "report_utilities", "", actor="lan")
    result = corrections.render_corrections(db)
    assert result.examples == 0 and result.skipped_test == 1
    assert held_out not in result.yaml


def test_annotate_marks_whole_words_only() -> None:
    assert corrections.annotate("mất điện ở đông hà", "Đông Hà") == "mất điện ở [đông hà](location)"
    assert corrections.annotate("mất điện ở đông hà", "ông h") == "mất điện ở đông hà"
    assert corrections.annotate("a [b] (c)", None) == "a b c"


# --- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"from": "27/11/2026"},
        {"from": "2026-11-28", "to": "2026-11-27"},
        {"outcome": "<script>"},
        {"intent": "bogus"},
        {"low": "1", "conf": "abc"},
        {"low": "1", "conf": "101"},
        {"low": "1", "conf": "0"},
        {"conf": "150%"},
        {"conf": "nan"},
        {"page": "0"},
        {"page": "x"},
    ],
)
def test_bad_call_filters_raise_bad_input(params: dict[str, str]) -> None:
    with pytest.raises(queries.BadInput):
        queries.parse_call_filter(params)


@pytest.mark.parametrize("value", ["0.5", "0,5", "50", "50%", " 50 % "])
def test_threshold_accepts_fractions_and_percentages(value: str) -> None:
    assert queries.parse_call_filter({"low": "1", "conf": value}).threshold == 0.5


def test_local_dates_become_utc_bounds() -> None:
    start, end = queries.local_day_bounds(date(2026, 11, 27), ZoneInfo("Asia/Ho_Chi_Minh"))
    assert (start, end) == ("2026-11-26T17:00:00.000Z", "2026-11-27T17:00:00.000Z")


def test_ticket_filters(db: Any) -> None:
    agencies = {"ioc": "IOC", "ubnd_xa": "UBND (xã/phường)"}
    f = queries.parse_ticket_filter({"status": "da xu ly", "agency": "ubnd_xa"}, agencies)
    assert f.status == "đã xử lý" and f.agency == "ubnd_xa"
    for params in ({"status": "xyz"}, {"agency": "nope"}, {"category": "x"}, {"age": "2"}):
        with pytest.raises(queries.BadInput):
            queries.parse_ticket_filter(params, agencies)
    assert queries.list_tickets(db, f) == []


def test_duration_text() -> None:
    assert queries.duration_text(30) == "dưới 1 phút"
    assert queries.duration_text(3 * 3600 + 120) == "3 giờ 2 phút"
    assert queries.duration_text(2 * 86400 + 3600) == "2 ngày 1 giờ"


# --- output safety ------------------------------------------------------------------------------


def test_csv_cells_cannot_become_formulas() -> None:
    assert _csv_cell('=HYPERLINK("http://x")').startswith("'=")
    assert _csv_cell("@SUM(A1)").startswith("'")
    assert _csv_cell("-1+2 mất điện") == "'-1+2 mất điện"
    assert _csv_cell("+84905000001") == "+84905000001"  # phone numbers stay numbers
    assert _csv_cell("mất điện") == "mất điện"
    assert _csv_cell(None) is None


def test_chart_labels_are_escaped() -> None:
    svg = str(charts.bar_chart([("<script>alert(1)</script>", 3)], "T<i>"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "<title" in svg and "T&lt;i&gt;" in svg
    heat = str(charts.heatmap(["a&b"], ["<x>"], {("a&b", "<x>"): 2}, "h"))
    assert "a&amp;b" in heat and "&lt;x&gt;" in heat and "<x>" not in heat
    cols = str(charts.column_chart([("01/11", 0), ("02/11", 7)], "c"))
    # Whole-number gridlines for counts.
    assert ">8</text>" in cols and ">6</text>" in cols and ",5<" not in cols


# --- the operators command ------------------------------------------------------------------


def test_operators_cli_prompts_for_the_password_twice(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hotline.console.cli import operators

    env = {"HOTLINE_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    # Typed twice; a mismatch asks again (click's confirmation prompt), nothing is echoed.
    result = runner.invoke(
        operators,
        ["add", "lan", "--role", "supervisor", "--name", "Nguyễn Thị Lan"],
        input="mật khẩu 1\nkhác hẳn\nmật khẩu 1\nmật khẩu 1\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "mật khẩu 1" not in result.output
    assert "Giám sát viên" in result.output
    result = runner.invoke(operators, ["list", "--json"], env=env)
    rows = yaml.safe_load(result.output)
    assert [(r["username"], r["role"], r["display_name"]) for r in rows] == [
        ("lan", "supervisor", "Nguyễn Thị Lan")
    ]
    result = runner.invoke(operators, ["add", "bad", "--role", "god"], input="x\nx\n", env=env)
    assert result.exit_code != 0
    result = runner.invoke(operators, ["disable", "nobody"], env=env)
    assert result.exit_code != 0 and "Không có tài khoản" in result.output
    result = runner.invoke(operators, ["disable", "lan"], env=env)
    assert result.exit_code == 0
    db = open_db(tmp_path / "hotline.db")
    assert not accounts.authenticate(db, "lan", "mật khẩu 1").ok
    actions = [r["action"] for r in db.query("SELECT action, actor FROM audit_log")]
    assert actions[:2] == ["operator_add", "operator_disable"]
    assert all(
        r["actor"].startswith("cli") for r in db.query("SELECT actor FROM audit_log LIMIT 2")
    )
    db.conn.close()


def test_export_speaks_vietnamese_in_local_time_without_paths() -> None:
    from zoneinfo import ZoneInfo

    from openpyxl import load_workbook

    from hotline.console import export

    row = {
        "id": 1,
        "code": "1234561",
        "status": "mới",
        "category": "report_utilities",
        "agency_name": "Công ty Điện lực Quảng Trị",
        "location_raw": "thôn an hưng",
        "location_unit": "Xã Triệu Phong",
        "location_code": "19333",
        "location_json": '{"unit": "Xã Triệu Phong"}',
        "description": "=mất điện",
        "caller": "+84905000001",
        "channel": "voice",
        "recording_path": "/srv/hotline/data/recordings/CA1.wav",
        "created_at": "2026-12-01T17:30:00.000Z",
        "confirmed_at": "2026-12-01T17:31:00.000Z",
    }
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    text = export.to_csv([row], tz).decode("utf-8-sig")
    header, line = text.splitlines()
    assert header.startswith("Mã phiếu,Trạng thái,Lĩnh vực,Cơ quan xử lý")
    assert "Điện, nước" in line and "report_utilities" not in line
    assert "02/12/2026 00:30" in line  # 17:30 UTC is 00:30 the next day in Vietnam
    assert "Gọi điện" in line and "'=mất điện" in line
    assert "/srv/" not in text and "{" not in text  # no server paths, no raw JSON
    import io

    ws = load_workbook(io.BytesIO(export.to_xlsx([row], tz))).active
    assert [c.value for c in ws[1]][:3] == ["Mã phiếu", "Trạng thái", "Lĩnh vực"]
    assert ws["C2"].value == "Điện, nước" and ws["K2"].value == "02/12/2026 00:30"
