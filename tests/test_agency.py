"""Agency accounts: an agency's staff see and work only the tickets routed to their agency, by
HTTP against a real server and, at phone width, in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hotline.store import open_db
from hotline.tickets import store as ts
from hotline.tickets.routing import DEFAULT_PATH, Router
from tests.conftest import base_env
from tests.servers import CHROMIUM, CHROMIUM_ARGS, HotlineServer, TwilioRestStandIn, free_port
from tests.test_console import PASSWORD
from tests.test_console import csrf_of as csrf
from tests.test_console import http_login as login

DONG_HA = {"name": "Phường Đông Hà", "code": "19333"}
GIO_LINH = {"name": "Xã Gio Linh", "code": "19318"}


def add(server: HotlineServer, user: str, role: str, agency: str = "") -> None:
    args = ["operators", "add", user, "--role", role, "--password-stdin"]
    if agency:
        args += ["--agency", agency]
    r = server.cli(*args, input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("agency")
    router = Router.load(DEFAULT_PATH)
    db = open_db(data_dir / "hotline.db")
    made = {}
    for name, category, place, text in (
        ("dh_env", "report_environment", DONG_HA, "Rác đổ đầy đầu kiệt 5"),
        ("dh_env2", "report_environment", DONG_HA, "Rác đổ đầy lề đường Hùng Vương"),
        ("dh_order", "report_public_order", DONG_HA, "Karaoke ồn tới khuya"),
        ("gl_env", "report_environment", GIO_LINH, "Rác đổ bên đường làng"),
    ):
        tid = ts.create_draft(
            db,
            call_sid=None,
            caller="+84905777888",
            category=category,
            description=text,
            location_raw=place["name"],
            location=place,
        )
        made[name] = ts.confirm_ticket(db, tid, router)
    db.conn.close()
    env = base_env(twilio_rest) | {"HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}"}
    server = HotlineServer(data_dir, env).start()
    dh_agency = made["dh_env"]["agency_code"]
    add(server, "ubnd-donghà".replace("à", "a"), "agency", dh_agency)
    add(server, "ubnd-giolinh", "agency", made["gl_env"]["agency_code"])
    add(server, "olga", "operator")
    yield {"server": server, "tickets": made, "agency": dh_agency}
    server.stop()


def test_an_agency_sees_only_its_own_tickets(world: dict) -> None:
    server, t = world["server"], world["tickets"]
    dh = login(server, "ubnd-dongha")
    page = dh.get("/console/agency")
    assert page.status_code == 200
    mine = [x for x in t.values() if x["agency_code"] == world["agency"]]
    for x in t.values():
        shown = f"{x['code'][:3]} {x['code'][3:]}" in page.text
        assert shown == (x in mine), x["agency_code"]
    # Another agency's ticket, by code: not found (its existence is not revealed).
    other = t["gl_env"]["code"]
    assert dh.get(f"/console/agency/tickets/{other}").status_code == 404
    token = csrf(dh, f"/console/agency/tickets/{t['dh_env']['code']}")
    r = dh.post(f"/console/agency/tickets/{other}/resolve", data={"csrf": token, "note": "x"})
    assert r.status_code == 404
    # ...and by the centre's own pages, by code or by id: none of them open.
    assert dh.get(f"/console/tickets/{other}").status_code in (303, 403)
    assert dh.get(f"/console/drafts/{t['gl_env']['id']}").status_code in (303, 403)
    assert dh.get("/console/search?q=rác").status_code in (303, 403)
    assert dh.get("/console/calls", follow_redirects=True).url.path == "/console/agency"
    # Centre staff are not agency staff.
    assert login(server, "olga").get("/console/agency").status_code == 404


def test_an_agency_accepts_resolves_refuses_and_returns(world: dict) -> None:
    server, t = world["server"], world["tickets"]
    dh = login(server, "ubnd-dongha")
    code = t["dh_env"]["code"]
    path = f"/console/agency/tickets/{code}"
    r = dh.post(
        f"{path}/accept", data={"csrf": csrf(dh, path), "note": "Đội vệ sinh tới chiều nay"}
    )
    assert r.status_code == 303
    # A result is required to resolve: the resident is texted it.
    r = dh.post(f"{path}/resolve", data={"csrf": csrf(dh, path), "note": ""})
    assert r.status_code == 400 and "Cần ghi kết quả" in r.text
    r = dh.post(f"{path}/resolve", data={"csrf": csrf(dh, path), "note": "Đã thu gom xong"})
    assert r.status_code == 303
    db = open_db(server.data_dir / "hotline.db", migrate=False)
    row = ts.get_ticket(db, code)
    assert row["status"] == "đã xử lý" and ts.latest_note(row) == "Đã thu gom xong"
    texts = [
        m["body"] for m in db.query("SELECT body FROM outbox WHERE ticket_id = ?", [row["id"]])
    ]
    assert any("Đội vệ sinh" in b for b in texts) and any("Đã thu gom xong" in b for b in texts)
    # Not theirs to begin with: hand it back to the centre, with a reason.
    other = t["dh_env2"]["code"]
    assert t["dh_env2"]["agency_code"] == world["agency"]
    opath = f"/console/agency/tickets/{other}"
    r = dh.post(f"{opath}/return", data={"csrf": csrf(dh, opath), "note": "Việc của chợ"})
    assert r.status_code == 303
    moved = ts.get_ticket(db, other)
    assert moved["agency_code"] != world["agency"]
    assert moved["history"][-1]["action"] == "assign"
    assert "Việc của chợ" in moved["history"][-1]["note"]
    assert dh.get(opath).status_code == 404  # no longer theirs
    db.conn.close()


@pytest.mark.browser
def test_an_agency_day_at_phone_width(world: dict) -> None:
    from playwright.sync_api import sync_playwright

    server, t = world["server"], world["tickets"]
    code = t["gl_env"]["code"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(
                base_url=server.url, viewport={"width": 390, "height": 844}, locale="vi-VN"
            )
            page = ctx.new_page()
            page.goto("/console/login")
            page.fill("#username", "ubnd-giolinh")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/agency")
            assert page.locator(f"text={code[:3]} {code[3:]}").is_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.click(f"text={code[:3]} {code[3:]}")
            page.wait_for_url(f"**/console/agency/tickets/{code}")
            page.click("#accept")
            page.wait_for_url("**?ok=accepted")
            assert "Đã tiếp nhận phiếu" in page.inner_text("main")
            page.fill("#result", "Đã dọn sạch đoạn đường")
            page.click("#resolve")
            page.wait_for_url("**?ok=resolved")
            assert "đã xử lý" in page.inner_text("h1")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()


def test_operators_work_incidents_and_see_messages_on_the_ticket(world: dict) -> None:
    server = world["server"]
    router = Router.load(DEFAULT_PATH)
    db = open_db(server.data_dir / "hotline.db", migrate=False)
    codes = []
    for n in range(3):
        tid = ts.create_draft(
            db,
            call_sid=None,
            caller=f"+8490566600{n}",
            category="report_disaster",
            description=f"ngập đường {n}",
            location=GIO_LINH,
        )
        codes.append(ts.confirm_ticket(db, tid, router)["code"])
    db.conn.commit()
    iid = next(db.query("SELECT incident_id FROM tickets WHERE code = ?", [codes[0]]))[
        "incident_id"
    ]
    db.conn.close()
    olga = login(server, "olga")
    page = olga.get("/console/incidents")
    assert page.status_code == 200 and f"/console/incidents/{iid}" in page.text
    path = f"/console/incidents/{iid}"
    assert "3 người phản ánh" in olga.get(path).text
    r = olga.post(f"{path}/split", data={"csrf": csrf(olga, path), "code": codes[2]})
    assert r.status_code == 303 and "2 người phản ánh" in olga.get(path).text
    r = olga.post(f"{path}/resolve", data={"csrf": csrf(olga, path), "note": ""})
    assert r.status_code == 400 and "Cần ghi kết quả" in r.text
    r = olga.post(f"{path}/resolve", data={"csrf": csrf(olga, path), "note": "Nước đã rút"})
    assert r.status_code == 303
    ticket = olga.get(f"/console/tickets/{codes[0]}").text
    assert "đã xử lý" in ticket and "Tin nhắn gửi người phản ánh" in ticket
    assert "Nước đã rút" in ticket and "Sự việc chung" in ticket
    # The one split off is untouched.
    assert "Nước đã rút" not in olga.get(f"/console/tickets/{codes[2]}").text
    assert olga.get("/console/incidents/abc").status_code == 404
