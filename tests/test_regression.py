"""The recorded-call regression suite: every call in recordings/ is replayed through a real server
(real Rasa, flow, synthesis and ticket store) over the Media Streams WebSocket, and its outcome
checked against the sidecar's `expect`.

Calls marked `asr: sidecar` take each caller turn's text from the sidecar (no Vietnamese speech
that the recognisers understand can be made here); `asr: live` calls are decoded live by the
engine they name, through a server started with that engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hotline.replay import Recording, check_expectations
from tests.conftest import OPERATOR_NUMBER, SMS_FROM, base_env
from tests.servers import ROOT, HotlineServer, TwilioRestStandIn

RECORDINGS = sorted((ROOT / "recordings").glob("*.yml"))


def sidecar(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


SIDECAR_CALLS = [p for p in RECORDINGS if sidecar(p).get("asr", "sidecar") == "sidecar"]
LIVE_CALLS = {sidecar(p)["engine"]: p for p in RECORDINGS if sidecar(p).get("asr") == "live"}


@pytest.fixture(scope="module")
def hotline(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn, rasa_server: Any
) -> Iterator[HotlineServer]:
    env = base_env(twilio_rest) | {
        "HOTLINE_NLU_URL": rasa_server.url,
        "HOTLINE_NLU_TOKEN": rasa_server.token,
    }
    server = HotlineServer(tmp_path_factory.mktemp("regression"), env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, HotlineServer]]:
    """Servers for sidecars that need other settings (their `env:`), started on first use."""
    started: dict[str, HotlineServer] = {}
    yield started
    for server in started.values():
        server.stop()


def server_for(
    path: Path, default: HotlineServer, servers: dict[str, HotlineServer]
) -> HotlineServer:
    extra = sidecar(path).get("env") or {}
    if not extra:
        return default
    key = repr(sorted(extra.items()))
    if key not in servers:
        env = default.env | {k: str(v) for k, v in extra.items()}
        data_dir = default.data_dir.parent / f"{default.data_dir.name}-env{len(servers)}"
        servers[key] = HotlineServer(data_dir, env).start()
    return servers[key]


def seed_ticket(server: HotlineServer, seed: dict[str, str]) -> None:
    """A ticket with a known code, as an earlier call would have left it."""
    from hotline.store import Store
    from hotline.tickets import store as tickets
    from hotline.tickets.routing import Router

    store = Store(server.data_dir / "hotline.db")
    router = Router.load(ROOT / "call_flows" / "routing.yml")

    def write(db: Any) -> None:
        if tickets.get_ticket(db, seed["code"]):
            return
        tid = tickets.create_draft(
            db,
            call_sid=None,
            caller="+84905999999",
            category="report_utilities",
            description="mất điện cả xóm",
        )
        tickets.confirm_ticket(db, tid, router)
        db.execute("UPDATE tickets SET code = ? WHERE id = ?", [seed["code"], tid])
        lifecycle = ["đã tiếp nhận", "đang xử lý", "đã xử lý"]
        target = seed["status"]
        steps = lifecycle[: lifecycle.index(target) + 1] if target in lifecycle else [target]
        for status in steps:
            tickets.set_status(db, seed["code"], status, note=seed.get("note"), actor="test")

    store.run(write)
    store.close()


async def replay(server: HotlineServer, path: Path) -> dict[str, Any]:
    rec = Recording.load(path.with_suffix(".wav"))
    if rec.sidecar.get("seed_ticket"):
        seed_ticket(server, rec.sidecar["seed_ticket"])
    # `realtime`: timing is what is tested (a pause inside a sentence), so no fast-forward.
    return (await server.replay(rec, fast=not rec.sidecar.get("realtime"))).summary()


@pytest.mark.nlu
@pytest.mark.parametrize("path", SIDECAR_CALLS, ids=lambda p: p.stem)
async def test_recorded_call(
    hotline: HotlineServer,
    servers: dict[str, HotlineServer],
    twilio_rest: TwilioRestStandIn,
    path: Path,
) -> None:
    summary = await replay(server_for(path, hotline, servers), path)
    problems = check_expectations(summary, sidecar(path)["expect"])
    assert not problems, f"{path.stem}: {problems}\n{yaml.safe_dump(summary, allow_unicode=True)}"
    seed = sidecar(path).get("seed_ticket") or {}
    if seed.get("after"):
        # What the call did to the ticket it asked about (a rating, a re-opening).
        db = server_for(path, hotline, servers).db()
        row = next(db.query("SELECT * FROM tickets WHERE code = ?", [seed["code"]]))
        for key, value in seed["after"].items():
            assert row[key] == value, (key, row[key])
    # Every caller turn was stored with the text the sidecar says was recognised.
    heard = [
        t["text"]
        for t in summary["turns"]
        if t["speaker"] == "caller" and t["kind"] in ("speech", "message")
    ]
    # A turn marked `continues` is the rest of the sentence before it, after a pause: stored
    # as one caller turn with it.
    spoken: list[str] = []
    for t in sidecar(path)["turns"]:
        if "text" in t:
            if t.get("continues") and spoken:
                spoken[-1] = f"{spoken[-1]} {t['text']}"
            else:
                spoken.append(t["text"])
    assert heard == spoken[: len(heard)]
    if summary["ticket"]:
        assert summary["ticket"]["history"][0]["action"] in ("created", "confirmed")
    for ticket in summary["tickets"]:
        # Every report its own ticket: on disk before it was read out, the code the caller
        # heard is the code stored, and its own SMS.
        assert any(
            ticket["code"] in said.replace(" ", "").replace(",", "") for said in summary["bot_said"]
        )
        assert ticket["call_sid"] == summary["call_sid"]
        sms = [r for r in twilio_rest.of_kind("sms") if ticket["code"] in r["form"]["Body"]]
        assert sms and sms[0]["form"]["From"] == SMS_FROM
    if summary["outcome"] == "transferred":
        updates = twilio_rest.of_kind("call_update", summary["call_sid"])
        assert updates and f"<Number>{OPERATOR_NUMBER}</Number>" in updates[0]["form"]["Twiml"]


@pytest.mark.nlu
def test_replay_with_test_flag_is_a_test_call_routed_to_no_agency(hotline: HotlineServer) -> None:
    wav = ROOT / "recordings" / "power_cut_with_place.wav"
    r = hotline.cli("replay", str(wav), "--url", hotline.url, "--fast", "--json", "--test")
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    out = json.loads(r.stdout)
    db = hotline.db()
    assert list(db.query("SELECT 1 FROM test_calls WHERE call_sid = ?", [out["call_sid"]]))
    ticket = next(db.query("SELECT * FROM tickets WHERE call_sid = ?", [out["call_sid"]]))
    assert "Điện lực" not in (ticket["agency_name"] or "")


@pytest.mark.nlu
def test_replay_cli_prints_the_ticket_and_tickets_show_has_its_history(
    hotline: HotlineServer,
) -> None:
    wav = ROOT / "recordings" / "flood_without_place.wav"
    r = hotline.cli("replay", str(wav), "--url", hotline.url, "--fast", "--json", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["problems"] == []
    code = out["ticket"]["code"]
    shown = hotline.cli("tickets", "show", code, "--json")
    assert shown.returncode == 0, shown.stderr
    ticket = json.loads(shown.stdout)
    assert ticket["category"] == "report_disaster" and ticket["status"] == "mới"
    assert [h["action"] for h in ticket["history"]][:2] == ["created", "confirmed"]
    text = hotline.cli("tickets", "show", code)
    assert code[:3] in text.stdout.replace(" ", "") and "mới" in text.stdout
