"""Retention, data-subject requests and files at rest, on a real SQLite file with real WAV
files, through the library and the real `hotline privacy` CLI."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tempfile
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import hotline.schema  # noqa: F401
from hotline.audio import write_wav
from hotline.calls import add_event, add_turn, caller_hash, upsert_call
from hotline.config import load_settings
from hotline.console.store import list_audit
from hotline.privacy import (
    REDACTED,
    DataPermissionError,
    PrivacyError,
    add_working_days,
    audit_access,
    check_data_permissions,
    deadlines,
    erase,
    export_zip,
    find,
    normalize_phone,
    purge,
    secure_data_dir,
)
from hotline.store import open_db
from hotline.tickets import store as tickets
from hotline.tickets.routing import Router
from tests.servers import HOTLINE, ROOT, HotlineServer, free_port

ALICE = "+84905111222"  # the person asking
BOB = "+84905333444"  # another caller, who must be left alone
SECRET = "test-secret"


def _settings(data: Path) -> Any:
    return load_settings(data_dir=data, secret_key=SECRET)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _call(db: Any, settings: Any, sid: str, number: str, at: datetime, words: str) -> list[Path]:
    rec = settings.recordings_dir
    rec.mkdir(parents=True, exist_ok=True)
    paths = [rec / f"{sid}.caller.wav", rec / f"{sid}.bot.wav", rec / f"{sid}.wav"]
    for p in paths:
        write_wav(p, b"\x01\x00" * 800)
    upsert_call(
        db,
        sid,
        caller=number,
        caller_hash=caller_hash(number, SECRET),
        started_at=_iso(at),
        recording_path=str(paths[0]),
        bot_recording_path=str(paths[1]),
        mixed_recording_path=str(paths[2]),
        outcome="ticket",
    )
    add_turn(db, sid, speaker="bot", kind="prompt", text="Xin chào")
    add_turn(db, sid, speaker="caller", kind="speech", text=words, intent="report_utilities")
    add_event(db, sid, "sms", sent=True)
    return paths


def _ticket(db: Any, sid: str, number: str, words: str, router: Router) -> dict[str, Any]:
    tid = tickets.create_draft(
        db,
        call_sid=sid,
        caller=number,
        category="report_utilities",
        description=words,
        location_raw="thôn an hưng",
    )
    return tickets.confirm_ticket(db, tid, router)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """Three calls: Alice long ago (ticket closed), Alice long ago (ticket still open), Bob
    long ago (no ticket), plus Alice today."""
    settings = _settings(tmp_path / "data")
    db = open_db(settings.db_path)
    router = Router.load(ROOT / "call_flows" / "routing.yml")
    now = datetime.now(UTC)
    old = now - timedelta(days=400)
    w: dict[str, Any] = {"settings": settings, "db": db, "now": now}
    w["closed_files"] = _call(db, settings, "CAclosed", ALICE, old, "mất điện ở nhà ông Hùng")
    w["open_files"] = _call(db, settings, "CAopen", "0905 111 222", old, "đường sụt trước nhà")
    w["bob_files"] = _call(db, settings, "CAbob", BOB, old, "rác ở chợ")
    w["new_files"] = _call(db, settings, "CAnew", ALICE, now, "hỏi thủ tục")
    w["closed"] = _ticket(db, "CAclosed", ALICE, "mất điện ở nhà ông Hùng", router)
    w["open"] = _ticket(db, "CAopen", "0905111222", "đường sụt trước nhà", router)
    for status in ("đã tiếp nhận", "đang xử lý", "đã xử lý"):
        tickets.set_status(db, w["closed"]["code"], status, note="Đã sửa xong", actor="lan")
    tickets.add_comment(db, w["closed"]["code"], "đã gọi lại cho ông Hùng", actor="lan")
    # The ticket closed long ago too (the clock is moved forward below instead of back here).
    db.execute("UPDATE tickets SET resolved_at = ? WHERE id = ?", [_iso(old), w["closed"]["id"]])
    return w


def test_phone_numbers_normalise() -> None:
    for raw in ("0905111222", "+84905111222", "84905111222", "0905 111 222", "(090) 511-1222"):
        assert normalize_phone(raw) == ALICE
    assert normalize_phone("02333888999") == "+842333888999"
    assert normalize_phone("+1 202 555 0123") == "+12025550123"
    for bad in ("", "abc", "12", "0905-abc"):
        with pytest.raises(PrivacyError):
            normalize_phone(bad)


def test_purge_on_a_clock_moved_forward(world: dict[str, Any]) -> None:
    db, settings = world["db"], world["settings"]
    # Today nothing recent goes; the 400-day-old calls do.
    dry = purge(db, settings, dry_run=True)
    assert dry.audio_calls == 2 and dry.kept_for_open_tickets == 1
    assert all(p.exists() for p in world["closed_files"] + world["bob_files"])  # dry run
    assert not [r for r in list_audit(db) if r["action"] == "privacy_purge"]

    # A draft left by a caller who hung up, and an audio file no call row points to.
    draft = tickets.create_draft(
        db, call_sid="CAnew", caller=ALICE, category="report_health", description="ngộ độc"
    )
    orphan = settings.recordings_dir / "CAorphan.wav"
    write_wav(orphan, b"\x01\x00" * 800)

    later = world["now"] + timedelta(days=95)  # past 90 days of audio for today's call too
    report = purge(db, settings, now=later)
    assert not orphan.exists()
    # Old audio gone, the open ticket's kept, today's call (95 days later) gone too.
    assert not any(p.exists() for p in world["closed_files"] + world["bob_files"])
    assert not any(p.exists() for p in world["new_files"])
    assert all(p.exists() for p in world["open_files"])
    assert report.audio_files == 10 and report.kept_for_open_tickets == 1
    rows = {r["call_sid"]: r for r in db.query("SELECT * FROM calls")}
    assert rows["CAclosed"]["mixed_recording_path"] is None
    assert rows["CAopen"]["mixed_recording_path"] == str(world["open_files"][2])

    # Transcripts (365 days) and numbers (180 days): old calls only, open ticket's kept.
    words = {
        r["call_sid"]: r["text"]
        for r in db.query("SELECT call_sid, text FROM turns WHERE speaker = 'caller'")
    }
    assert words["CAclosed"] == REDACTED and words["CAbob"] == REDACTED
    assert words["CAopen"] == "đường sụt trước nhà" and words["CAnew"] == "hỏi thủ tục"
    assert rows["CAclosed"]["caller"].startswith("anon:")
    assert rows["CAbob"]["caller"].startswith("anon:")
    assert rows["CAopen"]["caller"] == "0905 111 222" and rows["CAnew"]["caller"] == ALICE
    # The same number gets the same pseudonym: calls stay grouped.
    assert rows["CAclosed"]["caller_hash"] == caller_hash(ALICE, SECRET)

    # Closed ticket: a record of public service, without personal fields.
    closed = tickets.get_ticket(db, world["closed"]["code"])
    assert closed is not None
    assert closed["caller"] is None and closed["description"] == REDACTED
    assert closed["location_raw"] is None and closed["recording_path"] is None
    assert closed["status"] == "đã xử lý" and closed["category"] == "report_utilities"
    assert closed["agency_name"] and closed["code"] == world["closed"]["code"]
    notes = {h["action"]: h["note"] for h in closed["history"]}
    assert notes["comment"] == REDACTED and notes["status"] == "Đã sửa xong"
    # Open ticket untouched.
    still = tickets.get_ticket(db, world["open"]["code"])
    assert still is not None and still["caller"] == "0905111222"
    assert still["description"] == "đường sụt trước nhà"

    # One audit line with the counts.
    lines = [r for r in list_audit(db) if r["action"] == "privacy_purge"]
    assert len(lines) == 1 and lines[0]["detail"]["audio_files"] == 10
    # The draft is within its period 95 days on; a year on, its words and number go too.
    assert tickets.get_ticket_by_id(db, draft)["description"] == "ngộ độc"  # type: ignore[index]
    purge(db, settings, now=world["now"] + timedelta(days=366))
    gone = tickets.get_ticket_by_id(db, draft)
    assert gone is not None and gone["description"] == REDACTED and gone["caller"] is None

    # Once the open ticket closes, its audio goes a retention period after the closing.
    for status in ("đã tiếp nhận", "đang xử lý", "đã xử lý"):
        tickets.set_status(db, world["open"]["code"], status, note="Xong", actor="lan")
    closed_at = world["now"]
    purge(db, settings, now=closed_at + timedelta(days=30))
    assert all(p.exists() for p in world["open_files"])  # closed only now: kept for 90 days
    purge(db, settings, now=closed_at + timedelta(days=91))
    assert not any(p.exists() for p in world["open_files"])
    # A second purge finds nothing more to do.
    again = purge(db, settings, now=closed_at + timedelta(days=91))
    assert again.audio_files == 0 and again.turns_redacted == 0 and again.tickets_stripped == 0


def test_find_export_erase_one_number(world: dict[str, Any]) -> None:
    db, settings = world["db"], world["settings"]
    data = find(db, "0905111222", secret=SECRET, recordings_dir=settings.recordings_dir)
    assert sorted(data.call_sids) == ["CAclosed", "CAnew", "CAopen"]
    assert sorted(t["code"] for t in data.tickets) == sorted(
        [world["closed"]["code"], world["open"]["code"]]
    )
    assert len(data.recordings) == 9 and len(data.sms) == 3
    # Pseudonymised calls are still found (through the number's hash).
    purge(db, settings, now=world["now"] + timedelta(days=200))
    assert find(db, "84905111222", secret=SECRET, recordings_dir=settings.recordings_dir).calls

    data = find(db, ALICE, secret=SECRET, recordings_dir=settings.recordings_dir)
    buf = io.BytesIO()
    n_audio = export_zip(data, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        names = z.namelist()
        exported = json.loads(z.read("data.json"))
    assert "README.txt" in names and len([n for n in names if n.startswith("audio/")]) == n_audio
    assert not any("CAbob" in n for n in names)
    assert {c["call_sid"] for c in exported["calls"]} == {"CAclosed", "CAnew", "CAopen"}
    assert "rác ở chợ" not in json.dumps(exported, ensure_ascii=False)  # Bob's words
    texts = [t["text"] for c in exported["calls"] for t in c["turns"]]
    assert "đường sụt trước nhà" in texts

    counts = erase(db, data, actor="lan")
    assert counts["calls"] == 3 and counts["tickets"] == 2
    assert not find(db, ALICE, secret=SECRET, recordings_dir=settings.recordings_dir).calls
    assert not any(p.exists() for p in world["open_files"] + world["new_files"])
    for sid in ("CAclosed", "CAopen", "CAnew"):
        row = next(iter(db.query("SELECT * FROM calls WHERE call_sid = ?", [sid])))
        assert row["caller"] == "erased" and row["caller_hash"] is None
        assert row["outcome"] == "ticket"  # statistics stay
        assert {
            t["text"] for t in db.query("SELECT text FROM turns WHERE call_sid = ?", [sid])
        } == {REDACTED}
    t = tickets.get_ticket(db, world["open"]["code"])
    assert t is not None and t["caller"] is None and t["description"] == REDACTED
    # Bob is untouched.
    bob = find(db, BOB, secret=SECRET, recordings_dir=settings.recordings_dir)
    assert bob.call_sids == ["CAbob"]
    assert [
        r["text"] for r in db.query("SELECT text FROM turns WHERE call_sid = 'CAbob' ORDER BY seq")
    ][1] == REDACTED  # by the earlier purge, not by the erasure
    assert next(iter(db.query("SELECT caller FROM calls WHERE call_sid = 'CAbob'")))[
        "caller"
    ].startswith("anon:")
    line = next(r for r in list_audit(db) if r["action"] == "privacy_erase")
    assert line["actor"] == "lan" and line["detail"]["calls"] == 3
    assert ALICE not in json.dumps(line, ensure_ascii=False)  # the log holds no number


def test_request_deadlines_count_working_days() -> None:
    # Friday 13 Feb 2026, just before Tết: the acknowledgement is due after the holiday.
    ack, due = deadlines("access", date(2026, 2, 13))
    assert ack == date(2026, 2, 24)  # Mon 16 - Fri 20 are Tết, Mon 23 is day 1
    assert due == date(2026, 2, 23)
    assert deadlines("deletion", date(2026, 12, 7)) == (date(2026, 12, 9), date(2026, 12, 27))
    assert add_working_days(date(2026, 12, 4), 2) == date(2026, 12, 8)  # over a weekend
    with pytest.raises(PrivacyError):
        deadlines("gossip", date(2026, 12, 7))


def test_access_is_audited_once_per_listen(tmp_path: Path) -> None:
    db = open_db(tmp_path / "h.db")
    assert audit_access(db, "lan", "recording_listen", "CA1", "127.0.0.1")
    assert not audit_access(db, "lan", "recording_listen", "CA1", "127.0.0.1")  # a Range request
    assert audit_access(db, "minh", "recording_listen", "CA1")
    assert audit_access(db, "lan", "recording_download", "CA1")
    rows = list_audit(db)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("lan", "recording_download"),
        ("minh", "recording_listen"),
        ("lan", "recording_listen"),
    ]


def _private_base() -> Path:
    """A directory other users can enter, as a data directory's parent usually is."""
    base = Path(tempfile.mkdtemp(prefix="hotline-perm-"))
    base.chmod(0o755)
    return base


def test_data_permissions_checked_and_tightened() -> None:
    base = _private_base()
    try:
        settings = _settings(base / "data")
        settings.recordings_dir.mkdir(parents=True)
        # Others may pass through (x) but not list (r): a readable file inside is still exposed.
        settings.data_dir.chmod(0o711)
        settings.recordings_dir.chmod(0o711)
        wav = settings.recordings_dir / "CAx.wav"
        wav.write_bytes(b"RIFF")
        wav.chmod(0o644)
        with pytest.raises(DataPermissionError) as exc:
            check_data_permissions(settings)
        assert str(wav) in str(exc.value) and "chmod -R go-rwx" in str(exc.value)
        wav.chmod(0o640)  # group-readable only: not refused, but tightened
        check_data_permissions(settings)
        assert secure_data_dir(settings) >= 1
        assert stat.S_IMODE(wav.stat().st_mode) == 0o600
        assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
        new = settings.recordings_dir / "CAy.wav"
        new.write_bytes(b"RIFF")  # secure_data_dir set the process umask
        assert stat.S_IMODE(new.stat().st_mode) == 0o600
    finally:
        os.umask(0o022)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_serve_refuses_world_readable_data() -> None:
    base = _private_base()
    try:
        data = base / "data"
        data.mkdir(mode=0o755)
        data.chmod(0o755)
        server = HotlineServer(data, {"HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}"})
        with pytest.raises(RuntimeError) as exc:
            server.start(timeout=60)
        assert "refusing to start" in str(exc.value) and str(data) in str(exc.value)
        assert server.proc is not None and server.proc.returncode == 2
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_cli_find_export_erase_purge(world: dict[str, Any], tmp_path: Path) -> None:
    settings = world["settings"]
    world["db"].conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    env |= {"HOTLINE_DATA_DIR": str(settings.data_dir), "HOTLINE_SECRET_KEY": SECRET}

    def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HOTLINE), "privacy", *args],
            env=env,
            cwd=ROOT,
            text=True,
            capture_output=True,
            input=input,
            timeout=120,
        )

    r = cli("find", "84905111222")
    assert r.returncode == 0, r.stderr
    assert "3 cuộc gọi, 2 phiếu, 9 tệp ghi âm" in r.stdout and "CAbob" not in r.stdout
    assert cli("find", "not-a-number").returncode == 2
    out = tmp_path / "alice.zip"
    r = cli("export", "0905111222", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as z:
        assert len([n for n in z.namelist() if n.startswith("audio/")]) == 9
    r = cli("purge", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["audio_calls"] == 2
    assert all(p.exists() for p in world["bob_files"])
    # Erasing asks for the number again; a different one erases nothing.
    r = cli("erase", "0905111222", input="0905999999\n")
    assert r.returncode == 1 and all(p.exists() for p in world["new_files"])
    r = cli("erase", "0905111222", input="+84 905 111 222\n")
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in world["new_files"])
    assert all(p.exists() for p in world["bob_files"])
    r = cli("purge")
    assert r.returncode == 0 and "ghi âm của 1 cuộc gọi" in r.stdout  # Bob's old call
    db = open_db(settings.db_path)
    actions = [r["action"] for r in list_audit(db)]
    assert actions[0] == "privacy_purge" and actions[1] == "privacy_erase"
    assert {"privacy_purge", "privacy_erase", "privacy_export", "privacy_find"} <= set(actions)
    assert all(r["actor"].startswith("cli") for r in list_audit(db))


def test_retention_task_purges_in_the_background(world: dict[str, Any]) -> None:
    """What `hotline serve` runs: start_retention_task(services) on the event loop."""
    import asyncio
    from types import SimpleNamespace

    from hotline.privacy import start_retention_task
    from hotline.store import Store

    settings = world["settings"]
    world["db"].conn.close()
    store = Store(settings.db_path)

    async def run() -> None:
        task = start_retention_task(
            SimpleNamespace(settings=settings, store=store), first_delay_s=0
        )
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if await store.aquery("SELECT 1 FROM audit_log WHERE action = 'privacy_purge'"):
                    break
        finally:
            task.cancel()
        assert not task.done() or task.cancelled()

    asyncio.run(run())
    rows = list_audit(store.db)
    assert rows[0]["action"] == "privacy_purge" and rows[0]["actor"] == "hotline:retention"
    assert not any(p.exists() for p in world["bob_files"])  # 400 days old: gone
    assert all(p.exists() for p in world["open_files"] + world["new_files"])
    store.close()
