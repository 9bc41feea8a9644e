"""Admission control (issue 12, HOTLINE_MAX_CALLS): past the limit a call hears an honest busy
prompt and can leave a voice message that becomes a ticket; calls in progress go on.

The pure parts (the counter, the credential's mode, the flow's overflow entry, the dashboard)
are tested on their own; the behaviour end to end over the real WebSocket, with a server
limited to one live call and one overflow stream.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hotline.dialogue import engine as fe
from hotline.dialogue.flow import FlowError, load_flow, load_flows
from hotline.replay import Recording, parse_connect_stream
from hotline.telephony.admission import Admission
from hotline.telephony.credentials import MODE_PARAMETER, StreamCredentials
from hotline.telephony.signature import SIGNATURE_HEADER, sign
from hotline.telephony.webhooks import BUSY_APOLOGY
from tests.conftest import base_env
from tests.servers import ROOT, HotlineServer, TwilioRestStandIn, free_port
from tests.test_stream_security import attempt
from tests.test_telephony import call_row, ring, voice_form

FLOWS = ROOT / "call_flows"
OVERFLOW_CALLER = "+84905000091"
MESSAGE = "cống thoát nước ở thôn tân an xã gio linh bị tắc ba hôm nay, nước tràn vào nhà"


# --- the counter, on its own ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_admission_counts_live_then_overflow_then_busy() -> None:
    a = Admission(2, 1, clock=Clock())
    assert [a.decide(s) for s in ("A", "B", "C", "D")] == ["live", "live", "overflow", "busy"]
    assert a.status() == {"live": 2, "overflow": 1, "max_calls": 2, "max_overflow": 1}
    # Twilio asking again about a call keeps its mode and takes no second slot.
    assert a.decide("C") == "overflow" and a.decide("A") == "live"
    assert a.decide("E") == "busy"
    a.release("A")  # a stream ended, or the status callback said completed
    assert a.decide("E") == "live"
    a.release("C")
    assert a.decide("F") == "overflow"
    with pytest.raises(ValueError):
        Admission(0, 1)


def test_overflow_cap_from_settings() -> None:
    from hotline.config import Settings

    assert Admission.from_settings(Settings(max_calls=16)).max_overflow == 4
    assert Admission.from_settings(Settings(max_calls=2)).max_overflow == 1
    assert Admission.from_settings(Settings(max_calls=8, max_overflow_calls=0)).max_overflow == 0
    with pytest.raises(ValueError):
        Settings(max_calls=0)  # no "unlimited": a limit is what keeps calls in progress fast


def test_a_call_whose_stream_never_comes_frees_its_slot() -> None:
    clock = Clock()
    a = Admission(1, 0, pending_s=15, clock=clock)
    assert a.decide("A") == "live"
    clock.t += 10
    assert a.decide("B") == "busy"  # A is still pending
    clock.t += 6
    assert a.decide("B") == "live"  # A never streamed: expired
    a.connected("B")
    clock.t += 3600  # a connected call is never expired, however long
    assert a.decide("C") == "busy" and a.count("live") == 1
    a.release("B")
    assert a.decide("C") == "live"


def test_a_stream_not_admitted_by_the_webhook_is_counted_when_it_connects() -> None:
    a = Admission(1, 1, clock=Clock())
    a.connected("console-call")  # the console's "Gọi thử" opens its stream its own way
    assert a.decide("A") == "overflow"


# --- the credential binds the mode ------------------------------------------------------------


def test_the_credential_binds_the_mode() -> None:
    creds = StreamCredentials("token", "secret", 60)
    live, over = creds.issue("CA1"), creds.issue("CA1", mode="overflow")
    assert creds.check("CA1", live) is None and creds.check("CA1", live, mode="live") is None
    assert creds.check("CA1", over, mode="overflow") is None
    assert creds.check("CA1", over) is not None  # the mode dropped: live, not what was issued
    assert creds.check("CA1", over, mode="live") is not None
    assert creds.check("CA1", live, mode="overflow") is not None
    assert creds.check("CA2", over, mode="overflow") is not None


# --- the flow's overflow entry ----------------------------------------------------------------


def test_an_overflow_call_leaves_a_message_and_hangs_up() -> None:
    flow = load_flows(FLOWS)
    c = fe.Conversation(flow)
    actions = c.start("overflow")
    keys = [a.prompt for a in actions if isinstance(a, fe.Say)]
    assert keys == ["busy", "leave_message"] and c.state == "overflow"
    busy = flow.prompt("busy")
    assert "đều đang bận" in busy and "lời nhắn" in busy and "gọi lại sau" in busy
    assert "busy" in flow.prompts and busy in flow.fixed_texts()  # rendered at start
    assert actions[-1] == fe.Listen("message", None, 12)
    actions = c.handle(fe.MessageRecorded(MESSAGE, 1000, 6000))
    (ticket,) = [a for a in actions if isinstance(a, fe.OpenTicket)]
    assert ticket.fields["description"] == MESSAGE and ticket.fields["category"] == "voice_message"
    actions = c.handle(fe.TicketOpened(code="4821937"))
    said = " ".join(a.text for a in actions if isinstance(a, fe.Say))
    assert "4 8 2, 1 9 3 7" in said
    assert isinstance(actions[-1], fe.Hangup)  # no "anything else?": the lines are busy
    assert "anything_else" not in c.path and "greeting" not in c.path
    assert c.outcome == "overflow"
    # The usual start is untouched; an unknown entry is refused.
    assert fe.Conversation(flow).start()[0] == fe.EnterState("greeting")
    with pytest.raises(ValueError, match="no entry"):
        fe.Conversation(flow).start("nope")


def test_an_entry_to_an_unknown_state_is_refused_at_load(tmp_path: Path) -> None:
    raw = yaml.safe_load((FLOWS / "main.yml").read_text(encoding="utf-8"))
    raw["entries"] = {"overflow": "no_such_state"}
    path = tmp_path / "main.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FlowError, match="entries.overflow"):
        load_flow(path)
    # An entry is a way in: its state need not be reachable from `start`.
    raw["entries"] = {"overflow": "overflow"}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert load_flow(path).entries == {"overflow": "overflow"}
    del raw["entries"]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FlowError, match="unreachable states \\['overflow'\\]"):
        load_flow(path)


# --- the dashboard ----------------------------------------------------------------------------


def test_dashboard_counts_overflow_apart_from_containment(tmp_path: Path) -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    from hotline.calls import upsert_call
    from hotline.console import queries
    from hotline.store import open_db
    from hotline.tickets import store as ts
    from hotline.tickets.routing import Router

    db = open_db(tmp_path / "hotline.db")
    for i, outcome in enumerate(["answered", "answered", "no_input", "overflow", "overflow"]):
        upsert_call(db, f"CA{i}", caller="+84905123456", outcome=outcome, status="completed")
    tid = ts.create_draft(
        db, call_sid="CA3", caller="+84905123456", category="voice_message", description="x"
    )
    ts.confirm_ticket(db, tid, Router.load(FLOWS / "routing.yml"))
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    d = queries.dashboard(db, date(2026, 1, 1), datetime.now(tz).date(), tz)
    assert (d.total_calls, d.overflow, d.overflow_messages) == (5, 2, 1)
    # Overflow calls never reached the bot: 2 contained of the 3 the bot took.
    assert d.bot_calls == 3 and d.containment == pytest.approx(2 / 3)
    assert dict(d.groups)["Quá tải — để lại lời nhắn"] == 2
    # The calls list filters them by their own label.
    assert queries.OUTCOME_LABELS["overflow"].startswith("Quá tải")
    f = queries.parse_call_filter({"outcome": "overflow", "from": "2026-01-01"})
    rows, total = queries.list_calls(db, f, tz)
    assert total == 2 and {r["call_sid"] for r in rows} == {"CA3", "CA4"}


# --- end to end, over the real WebSocket ------------------------------------------------------


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The overflow caller's recording (synthesised here, so the regression suite, which
    replays every call in recordings/ on its own, does not take it for a normal call), beside
    the silent caller who holds the only live line."""
    from hotline.recordings import synthesize

    d = tmp_path_factory.mktemp("sidecars")
    for ext in ("wav", "yml"):
        shutil.copy(ROOT / "recordings" / f"silent_caller.{ext}", d)
    spec = d / "overflow_voice_message.yml"
    spec.write_text(
        yaml.safe_dump(
            {
                "description": "Mọi đường dây bận; người gọi để lại lời nhắn, thành phiếu.",
                "caller": OVERFLOW_CALLER,
                "asr": "sidecar",
                "turns": [{"text": MESSAGE, "wait": False}, {"silence": 4, "wait": True}],
            },
            allow_unicode=True,
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    synthesize(spec)
    return d


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn, sidecars: Path
) -> Iterator[HotlineServer]:
    env = base_env(twilio_rest) | {
        "HOTLINE_PUBLIC_URL": "https://hotline.test",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_SIDECAR_DIR": str(sidecars),
        "HOTLINE_MAX_CALLS": "1",
        "HOTLINE_MAX_OVERFLOW_CALLS": "1",
    }
    s = HotlineServer(tmp_path_factory.mktemp("admission"), env).start()
    # The NLU is external and down here: once checked, calls are not held for it.
    deadline = time.monotonic() + 30
    while s.health()[1].get("checked_s_ago") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    yield s
    s.stop()


def test_a_vad_is_ready_for_every_call_the_server_admits(server: HotlineServer) -> None:
    # HOTLINE_MAX_CALLS=1 plus one overflow call: two detectors built at start, so a call's
    # first frame does not wait ~0.1-0.25 s on the event loop for one (stalling other calls).
    deadline = time.monotonic() + 30
    while "voice activity detectors ready" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "voice activity detectors ready for 2 calls" in server.log()


def events(server: HotlineServer, call_sid: str, kind: str) -> list[dict[str, Any]]:
    db = server.db()
    try:
        rows = db.query(
            "SELECT * FROM events WHERE call_sid = ? AND kind = ? ORDER BY id", [call_sid, kind]
        )
        return [{**r, "detail": json.loads(r["detail"] or "{}")} for r in rows]
    finally:
        db.conn.close()


async def post_status(server: HotlineServer, call_sid: str, status: str = "completed") -> None:
    form = {**voice_form(call_sid), "CallStatus": status}
    signature = sign(server.auth_token, server.public_url + "/twilio/status", form)
    async with httpx.AsyncClient() as client:
        r = await client.post(
            server.url + "/twilio/status", data=form, headers={SIGNATURE_HEADER: signature}
        )
    assert r.status_code == 204, r.text


async def post_voice(server: HotlineServer, call_sid: str) -> str:
    form = voice_form(call_sid)
    signature = sign(server.auth_token, server.public_url + "/twilio/voice", form)
    async with httpx.AsyncClient() as client:
        r = await client.post(
            server.url + "/twilio/voice", data=form, headers={SIGNATURE_HEADER: signature}
        )
    assert r.status_code == 200, r.text
    return r.text


def admission(server: HotlineServer) -> dict[str, int]:
    return server.health()[1]["admission"]


async def test_call_past_the_limit_hears_busy_and_leaves_a_message(
    server: HotlineServer, sidecars: Path
) -> None:
    silent = Recording.load(sidecars / "silent_caller.wav")
    overflow = Recording.load(sidecars / "overflow_voice_message.wav")
    # Call 1 holds the only live line, in real time (about 30 s of reprompts and goodbye).
    first = asyncio.create_task(server.twilio(fast=False).call(silent))
    deadline = time.monotonic() + 30
    while admission(server)["live"] < 1 or not server.db().table("calls").count_where(
        "stream_sid IS NOT NULL AND stream_sid != ''"
    ):
        assert time.monotonic() < deadline, "call 1 never started"
        await asyncio.sleep(0.2)
    assert not first.done()

    second = await server.replay(overflow)
    summary = second.summary()
    _, params = parse_connect_stream(second.twiml)
    assert params[MODE_PARAMETER] == "overflow", second.twiml
    assert summary["outcome"] == "overflow", summary
    path = summary["path"]
    assert path[0] == "overflow" and "greeting" not in path, path
    assert path[-3:] == ["message_save", "message_code", "goodbye"], path
    # What the caller heard: the busy prompt first, played to its end (its mark came back).
    assert summary["bot_said"][0].startswith("Xin lỗi quý vị, hiện tất cả các đường dây")
    played = [name for name, *_ in second.marks_played]
    assert any(n.endswith("-busy") for n in played), played
    assert any(n.endswith("-ticket_code") for n in played), played
    # The message is a ticket on disk, and its code was read back to the caller.
    (ticket,) = summary["tickets"]
    assert ticket["category"] == "voice_message" and ticket["channel"] == "voice_message"
    assert ticket["description"] == MESSAGE and ticket["call_sid"] == second.call_sid
    code_said = next(t for t in summary["bot_said"] if "Mã phản ánh" in t)
    assert fe.spell_digits(ticket["code"]) in code_said
    (event,) = events(server, second.call_sid, "overflow")
    assert event["detail"] == {"live": 1, "limit": 1, "answer": "stream"}
    assert events(server, second.call_sid, "stream_started")[0]["detail"]["mode"] == "overflow"

    # Call 1 was not disturbed: it went on to its own end, as it would alone.
    assert not first.done()
    one = (await asyncio.wait_for(first, 120)).summary()
    assert one["outcome"] == "no_input" and "goodbye_silence" in one["path"], one
    assert one["path"][0] == "greeting" and "overflow" not in one["path"]
    assert admission(server)["live"] == 0 and admission(server)["overflow"] == 0
    log = server.log()
    assert "overflow (1/1 live calls" in log
    assert OVERFLOW_CALLER not in log and OVERFLOW_CALLER[-3:] in log  # masked, still traceable


async def test_past_the_overflow_cap_a_say_busy_and_status_callbacks_free_slots(
    server: HotlineServer,
) -> None:
    a, b, c, d = (f"CA{secrets.token_hex(16)}" for _ in range(4))
    assert MODE_PARAMETER not in parse_connect_stream(await post_voice(server, a))[1]
    assert parse_connect_stream(await post_voice(server, b))[1][MODE_PARAMETER] == "overflow"
    busy = await post_voice(server, c)
    assert "<Connect" not in busy and "<Hangup" in busy and BUSY_APOLOGY in busy
    assert call_row(server, c)["outcome"] == "overflow"
    assert events(server, c, "overflow")[0]["detail"]["answer"] == "say"
    # Twilio retrying (or anyone replaying) a webhook: the same answer, no second slot or event.
    again = parse_connect_stream(await post_voice(server, b))[1]
    assert again[MODE_PARAMETER] == "overflow"
    assert BUSY_APOLOGY in await post_voice(server, c)
    assert len(events(server, b, "overflow")) == len(events(server, c, "overflow")) == 1
    assert admission(server)["overflow"] == 1
    await post_status(server, c, "completed")
    assert call_row(server, c)["outcome"] == "overflow"  # not "not_answered": it was busy
    # A's caller hung up while it rang: Twilio's status callback frees the line for D.
    await post_status(server, a, "canceled")
    assert MODE_PARAMETER not in parse_connect_stream(await post_voice(server, d))[1]
    for sid in (b, d):
        await post_status(server, sid, "completed")
    assert admission(server) == {"live": 0, "overflow": 0, "max_calls": 1, "max_overflow": 1}


async def test_a_stream_cannot_pick_a_mode_it_was_not_given(server: HotlineServer) -> None:
    holder, over = f"CA{secrets.token_hex(16)}", f"CA{secrets.token_hex(16)}"
    live_params = await ring(server, holder)
    params = await ring(server, over)
    assert params[MODE_PARAMETER] == "overflow"
    forged = {
        "overflow claiming live": {**params, MODE_PARAMETER: "live"},
        "mode dropped": {k: v for k, v in params.items() if k != MODE_PARAMETER},
        "unknown mode": {**params, MODE_PARAMETER: "vip"},
        "live call claiming overflow": {**live_params, MODE_PARAMETER: "overflow"},
    }
    for why, p in forged.items():
        sid = holder if why.startswith("live") else over
        assert await attempt(server, sid, p) == "closed 1008", why
    assert "unknown stream mode" in server.log()
    assert "not issued for this call and mode" in server.log()
    # The genuine credentials still work: each call in its own mode.
    assert await attempt(server, over, params) == "media"
    assert await attempt(server, holder, live_params) == "media"
    assert events(server, over, "stream_started")[0]["detail"]["mode"] == "overflow"
    assert events(server, holder, "stream_started")[0]["detail"]["mode"] == "live"
    for sid in (holder, over):
        await post_status(server, sid, "completed")
