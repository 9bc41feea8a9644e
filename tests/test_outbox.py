"""Messages to residents: queued with the status change, delivered by the outbox worker through
Twilio's Messaging API (a loopback stand-in that records requests), retried with backoff, and
never lost across a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hotline import outbox
from hotline.store import open_db
from hotline.tickets import store as ts
from hotline.tickets.routing import DEFAULT_PATH, Router
from tests.conftest import base_env
from tests.servers import HotlineServer, TwilioRestStandIn, free_port

CALLER = "+84905111222"


def make_ticket(db: Any, caller: str | None = CALLER) -> dict[str, Any]:
    tid = ts.create_draft(
        db, call_sid=None, caller=caller, category="report_environment", description="rác"
    )
    return ts.confirm_ticket(db, tid, Router.load(DEFAULT_PATH))


def test_status_changes_queue_a_message_in_the_same_transaction(tmp_path: Path) -> None:
    db = open_db(tmp_path / "hotline.db")
    t = make_ticket(db)
    ts.set_status(db, t["code"], "đã tiếp nhận", actor="olga", note="Đội vệ sinh sẽ tới.")
    ts.set_status(db, t["code"], "đang xử lý", actor="olga")  # no message for this one
    ts.set_status(db, t["code"], "đã xử lý", actor="olga", note="Đã thu gom.")
    rows = outbox.for_ticket(db, t["id"])
    assert [r["reason"] for r in rows] == ["status:đã tiếp nhận", "status:đã xử lý"]
    assert all(r["state"] == "pending" and r["to_number"] == CALLER for r in rows)
    spaced = f"{t['code'][:3]} {t['code'][3:]}"
    assert spaced in rows[0]["body"] and "Đội vệ sinh sẽ tới." in rows[0]["body"]
    assert "Đã thu gom." in rows[1]["body"] and "đánh giá" in rows[1]["body"]
    # A refused status change queues nothing.
    with pytest.raises(ts.TicketError):
        ts.set_status(db, t["code"], "từ chối", actor="olga")
    assert len(outbox.for_ticket(db, t["id"])) == 2


def test_no_message_for_a_number_that_cannot_get_one(tmp_path: Path) -> None:
    db = open_db(tmp_path / "hotline.db")
    t = make_ticket(db, caller="console:olga")
    ts.set_status(db, t["code"], "từ chối", actor="olga", note="Trùng phản ánh khác")
    assert outbox.for_ticket(db, t["id"]) == []


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [outbox.backoff_s(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert outbox.backoff_s(20, 30) == 3600


def wait_for(pred: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def rows(data_dir: Path) -> list[dict[str, Any]]:
    db = open_db(data_dir / "hotline.db", migrate=False)
    try:
        return list(db.query("SELECT * FROM outbox ORDER BY id"))
    finally:
        db.conn.close()


def test_delivery_is_retried_and_survives_a_restart(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> None:
    data_dir = tmp_path_factory.mktemp("outbox")
    env = base_env(twilio_rest) | {
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_OUTBOX_RETRY_S": "1",
    }
    db = open_db(data_dir / "hotline.db")
    t = make_ticket(db)
    db.conn.close()
    # Twilio refuses this account: the message stays pending and is retried.
    broken = HotlineServer(data_dir, env | {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32}).start()
    try:
        r = broken.cli("tickets", "set-status", t["code"], "đã tiếp nhận", "--note", "Đã nhận.")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: rows(data_dir) and rows(data_dir)[0]["attempts"] >= 2)
        assert rows(data_dir)[0]["state"] == "pending"
    finally:
        broken.stop()
    before = len(twilio_rest.of_kind("sms"))
    # After a restart with working credentials the same message goes out, once.
    fixed = HotlineServer(data_dir, env).start()
    try:
        sent = wait_for(lambda: [r for r in rows(data_dir) if r["state"] == "sent"])
        assert sent[0]["provider_id"].startswith("SM")
        time.sleep(2.5)  # a few more worker rounds: nothing is sent twice
        sms = twilio_rest.of_kind("sms")[before:]
        mine = [m for m in sms if t["code"][:3] in m["form"]["Body"]]
        assert len(mine) == 1 and mine[0]["form"]["To"] == CALLER
        assert "Đã nhận." in mine[0]["form"]["Body"]
        shown = fixed.cli("tickets", "show", t["code"])
        assert "Tin nhắn gửi người phản ánh" in shown.stdout and "đã gửi" in shown.stdout
    finally:
        fixed.stop()


def test_without_sms_the_outbox_records_what_would_have_been_sent(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> None:
    data_dir = tmp_path_factory.mktemp("outbox-off")
    env = base_env(twilio_rest) | {
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
        "TWILIO_SMS_FROM": "",
    }
    db = open_db(data_dir / "hotline.db")
    t = make_ticket(db)
    db.conn.close()
    server = HotlineServer(data_dir, env).start()
    try:
        server.cli("tickets", "set-status", t["code"], "từ chối", "--note", "Không thuộc tỉnh")
        row = wait_for(lambda: [r for r in rows(data_dir) if r["state"] == "not_configured"])[0]
        assert "Không thuộc tỉnh" in row["body"]
    finally:
        server.stop()
