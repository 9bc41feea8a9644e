"""Grouped incidents: reports of one category in one commune/ward within a window are one
incident; each is still its own ticket; resolving the incident resolves and notifies them all."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from hotline.dialogue import engine as fe
from hotline.dialogue.flow import load_flows
from hotline.store import Store, open_db
from hotline.tickets import incidents
from hotline.tickets import store as ts
from hotline.tickets.cli import incidents_cli
from hotline.tickets.routing import DEFAULT_PATH, Router

FLOOD_ROAD = {"name": "Phường Đông Hà", "code": "19333"}
ROUTER = Router.load(DEFAULT_PATH)


def report(db: Any, n: int, *, category="report_disaster", place=FLOOD_ROAD, **kw) -> dict:
    tid = ts.create_draft(
        db,
        call_sid=f"CA{n}",
        caller=f"+8490500{n:04d}",
        category=category,
        description=f"đường Lê Duẩn ngập sâu {n}",
        location_raw="đường lê duẩn",
        location=place,
    )
    return ts.confirm_ticket(db, tid, ROUTER, **kw)


def test_twenty_concurrent_reports_about_one_place_are_one_incident(tmp_path: Path) -> None:
    store = Store(tmp_path / "hotline.db")
    results: list[dict] = []
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            results.append(store.run_durable(lambda db: report(db, n)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    codes = {r["code"] for r in results}
    assert len(codes) == 20  # each caller has their own ticket and code
    ids = {r["incident_id"] for r in store.query("SELECT incident_id FROM tickets")}
    assert len(ids) == 1 and None not in ids
    (incident,) = store.run(incidents.list_open)
    assert incident["reports"] == 20
    # What each caller was told: the count when they confirmed (1 for the first, then 2..20).
    assert sorted(r["incident_reports"] for r in results) == [1, *range(2, 21)]
    store.close()


def test_other_categories_places_and_old_reports_stand_alone(tmp_path: Path) -> None:
    db = open_db(tmp_path / "hotline.db")
    report(db, 1)
    assert report(db, 2, category="report_environment")["incident_id"] is None
    assert report(db, 3, place={"name": "Xã Gio Linh", "code": "19318"})["incident_id"] is None
    db.execute("UPDATE tickets SET confirmed_at = '2020-01-01T00:00:00.000Z'")
    assert report(db, 4, incident_window=timedelta(hours=6))["incident_id"] is None
    assert report(db, 5)["incident_id"] is not None  # 4 and 5 are recent: one incident


def test_resolving_an_incident_resolves_and_texts_every_reporter(tmp_path: Path) -> None:
    db = open_db(tmp_path / "hotline.db")
    tickets = [report(db, n) for n in range(3)]
    ts.set_status(db, tickets[0]["code"], "đã tiếp nhận", actor="olga", notify=False)
    incident_id = db.execute("SELECT incident_id FROM tickets LIMIT 1").fetchone()[0]
    db.conn.commit()
    db.conn.close()
    env = {"HOTLINE_DATA_DIR": str(tmp_path)}
    out = CliRunner().invoke(
        incidents_cli, ["resolve", str(incident_id), "--note", "Nước đã rút, đường thông"], env=env
    )
    assert out.exit_code == 0, out.output
    db = open_db(tmp_path / "hotline.db")
    rows = list(db.query("SELECT status FROM tickets"))
    assert {r["status"] for r in rows} == {"đã xử lý"}
    sms = list(db.query("SELECT to_number, body FROM outbox WHERE reason = 'status:đã xử lý'"))
    assert len(sms) == 3 and all("Nước đã rút" in m["body"] for m in sms)
    assert len({m["to_number"] for m in sms}) == 3
    listed = CliRunner().invoke(incidents_cli, ["list"], env=env)
    assert "Không có sự việc nào đang mở" in listed.output


def test_operators_merge_and_split(tmp_path: Path) -> None:
    db = open_db(tmp_path / "hotline.db")
    a = [report(db, n) for n in range(2)]
    b = [report(db, n, place={"name": "Xã Gio Linh", "code": "19318"}) for n in (5, 6)]
    merged = incidents.merge(db, a[1]["incident_id"], b[1]["incident_id"])
    assert merged["reports"] == 4
    incidents.split(db, b[0]["code"])
    assert incidents.get(db, a[1]["incident_id"])["reports"] == 3
    shown = CliRunner().invoke(
        incidents_cli, ["show", str(a[1]["incident_id"])], env={"HOTLINE_DATA_DIR": str(tmp_path)}
    )
    assert json.loads(shown.output)["reports"] == 3


def test_the_caller_is_told_others_reported_it_too() -> None:
    flow = load_flows(DEFAULT_PATH.parent)
    c = fe.Conversation(flow)
    c.start()
    c.handle(fe.Utterance("đường ngập", "report_disaster", 0.9, location={"raw": "x", "name": "P"}))
    c.handle(fe.Digit("1"))
    a = c.handle(fe.TicketOpened("4821937", "UBND phường Đông Hà", reports=12))
    text = " ".join(x.text for x in a if isinstance(x, fe.Say))
    assert "Đã có 12 người phản ánh sự việc này" in text
    assert text.index("Mã phản ánh") < text.index("Đã có 12 người")
    alone = fe.Conversation(flow)
    alone.start()
    alone.handle(fe.Utterance("đường ngập", "report_disaster", 0.9, location={"raw": "x"}))
    alone.handle(fe.Digit("1"))
    a = alone.handle(fe.TicketOpened("4821937", "UBND", reports=1))
    assert "người phản ánh sự việc này" not in " ".join(x.text for x in a if isinstance(x, fe.Say))
