"""A known mix of calls and tickets written straight into a hotline database, for the console's
tests and screenshots: what a day at the operations centre leaves behind, with figures that
are known in advance (containment, counts, search hits).

Rows are written with the project's own functions (hotline.calls, hotline.tickets.store) and
tickets are routed by the real routing table, so the console reads what the hotline writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hotline.calls import add_event, add_turn, upsert_call
from hotline.console.search import mark_test_call
from hotline.tickets import store as tickets
from hotline.tickets.routing import Router
from tests.servers import ROOT

# Outcomes of today's non-test calls. Contained (bot alone): answered 4 + status_given 2 +
# tickets the caller confirmed with the bot 3 = 9 of 19.
MIX: dict[str, int] = {
    "answered": 4,
    "status_given": 2,
    "ticket": 3,  # confirmed by the caller with the bot
    "ticket_by_operator": 1,  # outcome ticket, but an operator confirmed the draft
    "emergency": 2,
    "abandoned": 3,
    "no_input": 1,
    "transferred": 2,
    "message": 1,
}
CONTAINED = 9
TOTAL = 19
PAGING_TICKETS = 62
VN = ZoneInfo("Asia/Ho_Chi_Minh")  # older infrastructure tickets, so the queue has two pages


@dataclass
class Seeded:
    power_code: str = ""  # "mất điện" in Triệu Phong
    water_code: str = ""  # "mất nước" in Triệu Phong (must not match "mất điện")
    dog_code: str = ""  # a rabid dog filed under public order, from a call with a correction
    dog_call: str = ""
    dog_turn: int = 0
    phone_call: str = ""  # the caller +84912345678
    draft_id: int = 0  # an unconfirmed draft, caller +84987654321
    draft2_id: int = 0
    test_call: str = ""  # a "Gọi thử" call that made a ticket
    test_code: str = ""
    replay_test_call: str = ""  # a replay flagged as a test
    enquiry_call: str = ""  # a status enquiry about power_code
    confirmed_total: int = 0  # confirmed non-test tickets
    extra: dict[str, Any] = field(default_factory=dict)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed(db: Any, now: datetime | None = None) -> Seeded:
    router = Router.load(ROOT / "call_flows" / "routing.yml")
    now = now or datetime.now(UTC)
    out = Seeded()
    n = 0

    def call(
        outcome: str | None,
        caller: str,
        said: list[str],
        *,
        at: datetime,
        intent: str | None = None,
        duration: float = 40.0,
    ) -> str:
        nonlocal n
        n += 1
        sid = f"CAseed{n:04d}" + "0" * 22
        upsert_call(
            db,
            sid,
            caller=caller,
            started_at=_iso(at),
            ended_at=_iso(at + timedelta(seconds=duration)),
            duration_s=duration,
            outcome=outcome,
            last_intent=intent,
            status="completed",
        )
        add_turn(db, sid, speaker="bot", kind="prompt", text="Xin chào, đây là đường dây nóng.",
                 start_ms=0, end_ms=3000)  # fmt: skip
        for i, text in enumerate(said):
            add_turn(db, sid, speaker="caller", kind="speech", text=text, start_ms=4000 + 6000 * i,
                     end_ms=7000 + 6000 * i, intent=intent if i == 0 else "affirm",
                     intent_confidence=0.93)  # fmt: skip
        return sid

    def ticket(
        sid: str | None,
        caller: str,
        category: str,
        description: str,
        unit: str | None,
        *,
        actor: str = "hotline",
        confirm: bool = True,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        tid = tickets.create_draft(
            db,
            call_sid=sid,
            caller=caller,
            category=category,
            description=description,
            location_raw=unit.lower() if unit else None,
            location={"unit": unit} if unit else None,
        )
        if not confirm:
            return {"id": tid}
        t = tickets.confirm_ticket(db, tid, router, actor=actor)
        if at is not None:
            stamp = _iso(at)
            db.execute(
                "UPDATE tickets SET created_at = ?, confirmed_at = ? WHERE id = ?",
                [stamp, stamp, tid],
            )
        if sid:
            db.execute("UPDATE calls SET ticket_code = ? WHERE call_sid = ?", [t["code"], sid])
        return t

    # Today's calls fall between local midnight and now, whenever the tests run.
    local_now = now.astimezone(VN)
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = max(local_now - midnight, timedelta(minutes=1))

    def today_at(i: int) -> datetime:
        return midnight + span * (i / (TOTAL + 3))

    today = today_at(TOTAL + 1)
    k = 0
    for outcome, count in MIX.items():
        for _ in range(count):
            k += 1
            caller = f"+8490500{k:04d}"
            at = today_at(k)
            if outcome == "ticket":
                sid = call("ticket", caller, ["đèn đường hỏng mấy hôm nay"], at=at,
                           intent="report_infrastructure")  # fmt: skip
                ticket(sid, caller, "report_infrastructure", "đèn đường hỏng", "Xã Cam Lộ")
            elif outcome == "ticket_by_operator":
                sid = call("ticket", caller, ["rác thải đổ bừa bãi"], at=at,
                           intent="report_environment")  # fmt: skip
                ticket(sid, caller, "report_environment", "rác thải", None, actor="olga")
            elif outcome == "status_given" and not out.enquiry_call:
                out.enquiry_call = call(outcome, caller, ["tui hỏi phiếu hôm qua"], at=at,
                                        intent="ask_ticket_status")  # fmt: skip
            else:
                call(outcome, caller, ["cho tui hỏi chút"], at=at, intent="ask_public_service")

    # Search targets (older than today, so they do not change today's mix).
    yesterday = now - timedelta(days=1)
    sid = call("ticket", "+84912345678", ["nhà tui ở triệu phong mất điện từ sáng tới chừ"],
               at=yesterday, intent="report_utilities")  # fmt: skip
    out.phone_call = sid
    out.power_code = ticket(sid, "+84912345678", "report_utilities",
                            "mất điện từ sáng tới chừ", "Xã Triệu Phong")["code"]  # fmt: skip
    sid = call("ticket", "+84911000222", ["mất nước mấy ngày ở triệu phong"],
               at=yesterday - timedelta(hours=1), intent="report_utilities")  # fmt: skip
    out.water_code = ticket(sid, "+84911000222", "report_utilities",
                            "mất nước mấy ngày", "Xã Triệu Phong")["code"]  # fmt: skip
    sid = call("ticket", "+84911000333", ["có con chó dại cắn người ở xóm tui"],
               at=yesterday - timedelta(hours=2), intent="report_public_order")  # fmt: skip
    out.dog_call = sid
    out.dog_turn = next(
        iter(db.query("SELECT id FROM turns WHERE call_sid = ? AND speaker = 'caller'", [sid]))
    )["id"]
    out.dog_code = ticket(sid, "+84911000333", "report_public_order",
                          "con chó dại cắn người", "Xã Triệu Phong")["code"]  # fmt: skip

    # Drafts the caller never confirmed.
    sid = call("abandoned", "+84987654321", ["cây đổ chắn ngang đường"],
               at=yesterday - timedelta(hours=3), intent="report_infrastructure")  # fmt: skip
    out.draft_id = ticket(sid, "+84987654321", "report_infrastructure", "cây đổ chắn đường",
                          "Xã Cam Lộ", confirm=False)["id"]  # fmt: skip
    sid = call("abandoned", "+84987000111", ["ống nước bể"],
               at=yesterday - timedelta(hours=4), intent="report_utilities")  # fmt: skip
    out.draft2_id = ticket(sid, "+84987000111", "report_utilities", "ống nước bể", None,
                           confirm=False)["id"]  # fmt: skip

    # Test calls: one from "Gọi thử", one replay flagged as a test. Both answered "today".
    out.test_call = call("ticket", "console:alice", ["thử mất điện"], at=today,
                         intent="report_utilities")  # fmt: skip
    out.test_code = ticket(out.test_call, "console:alice", "report_utilities", "thử mất điện",
                           "Xã Triệu Phong")["code"]  # fmt: skip
    out.replay_test_call = call("answered", "+84905999999", ["hỏi thử"], at=today,
                                intent="ask_public_service")  # fmt: skip
    mark_test_call(db, out.replay_test_call, "replay")

    # Older tickets for paging: confirmed over the past weeks.
    for i in range(PAGING_TICKETS):
        ticket(None, f"+8490600{i:04d}", "report_infrastructure", f"ổ gà trên đường số {i}",
               None, at=now - timedelta(days=2 + i % 25, hours=i))  # fmt: skip
    out.confirmed_total = MIX["ticket"] + MIX["ticket_by_operator"] + 3 + PAGING_TICKETS
    add_event(db, out.dog_call, "hangup", 40000)
    # The status enquiry asked about the power cut's ticket (what the hotline logs).
    add_event(db, out.enquiry_call, "ticket_lookup", 9000, code=out.power_code, status="ok")
    return out
