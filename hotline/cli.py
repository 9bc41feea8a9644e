"""The `hotline` command: serve, replay, calls, say; tickets, nlu and operators from their modules."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from hotline.config import ConfigError, Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        click.echo(f"hotline: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="hotline")
def main() -> None:
    """Đường dây nóng 1900868674 tỉnh Quảng Trị: the offline AI voice hotline."""
    # Whatever a command creates (database, recordings, exports) is the owner's alone.
    os.umask(0o077)


# --- serve ------------------------------------------------------------------------------------
@main.command()
@click.option("--host", help="Interface to listen on (HOTLINE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port (HOTLINE_PORT, default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the hotline: Twilio webhooks, media streams, console, and the Rasa server."""
    import uvicorn

    from hotline.app import DrainingServer, create_app
    from hotline.logs import setup_logging
    from hotline.privacy import DataPermissionError, check_data_permissions, secure_data_dir

    settings = _settings(host=host, port=port)
    setup_logging(settings.log_level)
    try:
        check_data_permissions(settings)
    except DataPermissionError as exc:
        click.echo(f"hotline: refusing to start: {exc}", err=True)
        sys.exit(2)
    try:
        secure_data_dir(settings)
    except OSError as exc:
        # A full or read-only data directory: one line naming HOTLINE_DATA_DIR, no traceback.
        from hotline.recovery import check_data_dir

        try:
            check_data_dir(settings)
        except ConfigError as why:
            click.echo(f"hotline: {why}", err=True)
            sys.exit(2)
        click.echo(f"hotline: HOTLINE_DATA_DIR={settings.data_dir}: {exc}", err=True)
        sys.exit(2)
    import logging

    log = logging.getLogger("hotline")
    if not settings.verify_signatures:
        log.warning(
            "*** HOTLINE_VERIFY_SIGNATURES=false: requests are NOT checked to come from "
            "Twilio. Never run a public line like this. ***"
        )
    if not settings.public_url:
        log.info(
            "HOTLINE_PUBLIC_URL is not set: serving %s for local use. To take real calls, "
            "expose this port over https (for example `ngrok http %d`), set "
            "HOTLINE_PUBLIC_URL to that https URL and TWILIO_AUTH_TOKEN, and point the "
            "number's voice webhook at <URL>/twilio/voice and its status callback at "
            "<URL>/twilio/status.",
            settings.base_url,
            settings.port,
        )
    try:
        app = create_app(settings)
    except ConfigError as exc:  # an unusable data directory: one line, no traceback
        click.echo(f"hotline: {exc}", err=True)
        sys.exit(2)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=30,
        ws_ping_interval=20,
        # Twilio's messages are < 1 KB: a bigger one is refused as it arrives, not buffered.
        ws_max_size=settings.stream_max_message_bytes,
        proxy_headers=True,
    )
    DrainingServer(config, app.state.services).run()


# --- calls ------------------------------------------------------------------------------------
@main.group()
def calls() -> None:
    """Recorded calls: list, show, export as a replayable recording."""


def _db(settings: Settings) -> Any:
    import hotline.schema  # noqa: F401  (registers every table)
    from hotline.store import open_db

    return open_db(settings.db_path)


@calls.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--outcome", help="Only calls with this outcome (ticket, answered, ...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, caller numbers masked.")
def calls_list(limit: int, outcome: str | None, as_json: bool) -> None:
    """The latest calls, newest first."""
    from hotline.calls import list_calls, mask_number

    db = _db(_settings())
    rows = list_calls(db, limit, "outcome = ?" if outcome else "", [outcome] if outcome else [])
    for r in rows:
        r["caller"] = mask_number(r.get("caller"))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not rows:
        click.echo("Chưa có cuộc gọi nào. (No calls yet.)")
        return
    click.echo(
        f"{'CALL SID':36} {'BẮT ĐẦU (UTC)':24} {'SỐ GỌI':14} {'KẾT QUẢ':12} {'MÃ':8} TRẠNG THÁI"
    )
    for r in rows:
        click.echo(
            f"{r['call_sid']:36} {(r.get('started_at') or ''):24} {r['caller']:14} "
            f"{(r.get('outcome') or '-'):12} {(r.get('ticket_code') or '-'):8} "
            f"{r.get('status') or ''}"
        )


@calls.command("show")
@click.argument("call_sid")
@click.option("--json", "as_json", is_flag=True)
@click.option("--full-number", is_flag=True, help="Show the caller's number unmasked.")
def calls_show(call_sid: str, as_json: bool, full_number: bool) -> None:
    """One call: turns, events, outcome."""
    from hotline.calls import get_call, mask_number

    call = get_call(_db(_settings()), call_sid)
    if call is None:
        click.echo(f"hotline: no call {call_sid}", err=True)
        sys.exit(1)
    if not full_number:
        call["caller"] = mask_number(call.get("caller"))
    if as_json:
        click.echo(json.dumps(call, ensure_ascii=False, indent=1))
        return
    click.echo(
        f"Cuộc gọi {call['call_sid']} từ {call['caller']}: {call.get('outcome') or '-'} "
        f"({call.get('status')}, {call.get('hangup_reason') or '-'})"
    )
    click.echo(f"Ghi âm: {call.get('mixed_recording_path') or call.get('recording_path') or '-'}")
    if call.get("ticket_code"):
        click.echo(f"Phản ánh: {call['ticket_code']}")
    click.echo(f"Luồng: {' > '.join(call['flow_path'])}")
    for t in call["turns"]:
        who = "Người gọi" if t["speaker"] == "caller" else "Tổng đài"
        extra = f"  [{t['intent']} {t['intent_confidence'] or 0:.2f}]" if t.get("intent") else ""
        cut = " (bị ngắt)" if t.get("interrupted") else ""
        click.echo(f"{(t.get('start_ms') or 0) / 1000:7.1f}s {who:9} {t['text']}{extra}{cut}")


@calls.command("export")
@click.argument("call_sid")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Path without extension: writes NAME.wav and NAME.yml.",
)
def calls_export(call_sid: str, output: Path) -> None:
    """Save a call as a replayable recording (caller audio + sidecar) for the regression suite."""
    from hotline.recordings import export_call

    settings = _settings()
    wav, side = export_call(_db(settings), call_sid, output)
    click.echo(f"wrote {wav} and {side}")


@calls.command("synth")
@click.argument("specs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def calls_synth(specs: tuple[Path, ...]) -> None:
    """Make synthetic recorded calls (WAV) from sidecars with espeak-ng, for the test suite."""
    from hotline.recordings import synthesize

    for spec in specs:
        click.echo(f"wrote {synthesize(spec)}")


# --- replay -----------------------------------------------------------------------------------
@main.command()
@click.argument("wavs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--url", help="Where the hotline runs (default: http://HOTLINE_HOST:HOTLINE_PORT).")
@click.option(
    "--public-url", help="The URL the server signs against (default: HOTLINE_PUBLIC_URL or --url)."
)
@click.option("--dtmf", default="", help="Keys to press without a sidecar: '5.0:1,9.5:123#'.")
@click.option("--fast", is_flag=True, help="Send audio as fast as the server takes it.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--check", is_flag=True, help="Compare with the sidecar's `expect`; exit 1 if it differs."
)
@click.option(
    "--test",
    "mark_test",
    is_flag=True,
    help="Mark the calls as test calls (labelled, left out of figures, routed to no agency).",
)
def replay(
    wavs: tuple[Path, ...],
    url: str | None,
    public_url: str | None,
    dtmf: str,
    fast: bool,
    as_json: bool,
    check: bool,
    mark_test: bool,
) -> None:
    """Play recorded calls into a running hotline, exactly as Twilio would."""
    from hotline.replay import (
        Recording,
        TwilioStandIn,
        check_expectations,
        parse_dtmf_option,
    )

    settings = _settings()
    url = url or f"http://{settings.host}:{settings.port}"
    public = public_url or settings.public_url or url
    client = TwilioStandIn(url, settings.auth_token, public_url=public, fast=fast)

    def mark(call_sid: str) -> None:
        # Marked before the call, so a ticket it makes is never given to an agency.
        from hotline.console.search import mark_test_call

        db = _db(settings)
        try:
            with db.conn:
                mark_test_call(db, call_sid)
        finally:
            db.conn.close()

    failed = 0
    outputs = []
    for wav in wavs:
        rec = Recording.load(wav)
        try:
            result = asyncio.run(
                client.call(rec, dtmf=parse_dtmf_option(dtmf), before=mark if mark_test else None)
            )
        except (OSError, RuntimeError) as exc:
            click.echo(f"hotline: replay of {wav} failed: {exc}", err=True)
            sys.exit(1)
        summary = result.summary()
        summary["recording_file"] = str(wav)
        if check and rec.sidecar and rec.sidecar.get("expect"):
            problems = check_expectations(summary, rec.sidecar["expect"])
            summary["problems"] = problems
            failed += bool(problems)
        outputs.append(summary)
        if not as_json:
            _print_replay(summary)
    if as_json:
        click.echo(
            json.dumps(
                outputs[0] if len(outputs) == 1 else outputs,
                ensure_ascii=False,
                indent=1,
                default=str,
            )
        )
    sys.exit(1 if failed else 0)


def _print_replay(s: dict[str, Any]) -> None:
    click.echo(
        f"== {s['recording_file']}: call {s['call_sid']} -> {s['outcome']} ({s['hangup_reason']})"
    )
    click.echo(f"   path: {' > '.join(s['path'])}")
    if s.get("first_question_s") is not None:
        click.echo(f"   first question said by {s['first_question_s']:.1f} s")
    for t in s["turns"]:
        who = "caller" if t["speaker"] == "caller" else "bot   "
        intent = f" [{t['intent']}]" if t.get("intent") else ""
        click.echo(f"   {who} {t['text']}{intent}")
    for t in s.get("tickets") or ([s["ticket"]] if s.get("ticket") else []):
        click.echo(
            f"   ticket {t['code']} {t['category']} -> {t.get('agency_name')} ({t['status']})"
        )
    for p in s.get("problems", []):
        click.echo(f"   PROBLEM: {p}")


# --- open311 ----------------------------------------------------------------------------------
@main.group()
def open311() -> None:
    """Open311 GeoReport v2 API (/open311/v2/): keys for the portals that file reports."""


@open311.group("keys")
def open311_keys() -> None:
    """API keys: needed to POST requests; GETs are public and carry no personal data."""


@open311_keys.command("add")
@click.argument("name")
def open311_keys_add(name: str) -> None:
    """Print a new key for NAME (shown once; only its hash is stored)."""
    from hotline.open311 import add_key

    db = _db(_settings())
    try:
        with db.conn:
            key = add_key(db, name)
    except ValueError as exc:
        click.echo(f"hotline: {exc}", err=True)
        sys.exit(2)
    click.echo(key)


@open311_keys.command("list")
def open311_keys_list() -> None:
    from hotline.open311 import list_keys

    for row in list_keys(_db(_settings())):
        state = f"thu hồi {row['revoked_at']}" if row["revoked_at"] else "đang dùng"
        click.echo(f"{row['name']}\t{row['created_at']}\t{state}")


@open311_keys.command("revoke")
@click.argument("name")
def open311_keys_revoke(name: str) -> None:
    from hotline.open311 import revoke_key

    db = _db(_settings())
    with db.conn:
        n = revoke_key(db, name)
    if not n:
        click.echo(f"hotline: no active key named {name!r}", err=True)
        sys.exit(2)
    click.echo(f"revoked {n} key(s) of {name}")


# --- privacy ----------------------------------------------------------------------------------
@main.group()
def privacy() -> None:
    """Personal data: retention purge, and a person's requests (find, export, erase)."""


def _cli_actor() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except Exception:
        return "cli"


@privacy.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def privacy_purge(dry_run: bool, as_json: bool) -> None:
    """Apply the retention settings now (`hotline serve` does it every day)."""
    from hotline.privacy import purge

    settings = _settings()
    db = _db(settings)
    with db.atomic():
        report = purge(db, settings, dry_run=dry_run, actor=_cli_actor())
    if as_json:
        click.echo(json.dumps({"as_of": report.as_of, **report.counts()}, ensure_ascii=False))
        return
    verb = "Sẽ xoá (dry run)" if dry_run else "Đã xoá"
    click.echo(
        f"{verb}: ghi âm của {report.audio_calls} cuộc gọi ({report.audio_files} tệp), "
        f"lời nói của {report.transcript_calls} cuộc gọi ({report.turns_redacted} lượt), "
        f"{report.numbers_pseudonymised} số gọi thay bằng bí danh, "
        f"thông tin cá nhân của {report.tickets_stripped} phiếu đã đóng. "
        f"Giữ lại ghi âm của {report.kept_for_open_tickets} cuộc gọi có phiếu đang mở."
    )


def _find(number: str) -> Any:
    from hotline.privacy import PrivacyError, find

    settings = _settings()
    db = _db(settings)
    try:
        data = find(
            db, number, secret=settings.session_secret, recordings_dir=settings.recordings_dir
        )
    except PrivacyError as exc:
        click.echo(f"hotline: {exc}", err=True)
        sys.exit(2)
    return settings, db, data


@privacy.command("find")
@click.argument("phone")
@click.option("--json", "as_json", is_flag=True, help="Everything found, as JSON.")
def privacy_find(phone: str, as_json: bool) -> None:
    """Every call, ticket, recording and SMS for PHONE (0905..., +84905..., 84905...)."""
    from hotline.console.store import audit
    from hotline.privacy import mask_number

    settings, db, data = _find(phone)
    with db.atomic():
        audit(db, _cli_actor(), "privacy_find", mask_number(data.number), data.counts())
    if as_json:
        click.echo(json.dumps(data.as_json(), ensure_ascii=False, indent=1, default=str))
        return
    c = data.counts()
    click.echo(
        f"{data.number}: {c['calls']} cuộc gọi, {c['tickets']} phiếu, {c['recordings']} tệp ghi âm, "
        f"{c['sms']} SMS, {c['corrections']} nhãn NLU"
    )
    for call in data.calls:
        click.echo(
            f"  cuộc gọi {call['call_sid']}  {call.get('started_at') or ''}  "
            f"{call.get('outcome') or '-'}  {len(call['turns'])} lượt"
        )
    for t in data.tickets:
        click.echo(
            f"  phiếu {t.get('code') or '(nháp #' + str(t['id']) + ')'}  {t.get('status') or '-'}  "
            f"{t.get('category') or ''}"
        )
    for p in data.recordings:
        click.echo(f"  ghi âm {p}")
    for m in data.sms:
        click.echo(f"  SMS {m['at']}  {m.get('ticket_code') or m.get('call_sid')}")


@privacy.command("export")
@click.argument("phone")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
def privacy_export(phone: str, output: Path) -> None:
    """Write everything kept about PHONE to a zip (data.json plus the audio), owner-only."""
    from hotline.console.store import audit
    from hotline.privacy import export_zip, mask_number

    settings, db, data = _find(phone)
    n = export_zip(data, output)
    with db.atomic():
        audit(db, _cli_actor(), "privacy_export", mask_number(data.number), data.counts())
    click.echo(f"wrote {output}: {len(data.calls)} calls, {len(data.tickets)} tickets, {n} audio")


@privacy.command("erase")
@click.argument("phone")
@click.option("--yes", is_flag=True, help="Do not ask (scripts); the audit line is written anyway.")
def privacy_erase(phone: str, yes: bool) -> None:
    """Erase PHONE's personal data: audio, words, number. Tickets stay without them."""
    from hotline.privacy import erase, normalize_phone

    settings, db, data = _find(phone)
    c = data.counts()
    if not data.calls and not data.tickets:
        click.echo(f"Không có dữ liệu nào của {data.number}. (Nothing kept for this number.)")
        return
    click.echo(
        f"Sẽ xoá dữ liệu cá nhân của {data.number}: {c['calls']} cuộc gọi, {c['tickets']} phiếu, "
        f"{c['recordings']} tệp ghi âm. Không thể hoàn tác. (This cannot be undone.)"
    )
    if not yes:
        again = click.prompt("Gõ lại số điện thoại để xác nhận (type the number again)")
        try:
            same = normalize_phone(again) == data.number
        except ValueError:
            same = False
        if not same:
            click.echo(
                "hotline: số không khớp, không xoá gì. (Numbers differ; nothing erased.)", err=True
            )
            sys.exit(1)
    with db.atomic():
        counts = erase(db, data, actor=_cli_actor())
    click.echo(f"Đã xoá: {json.dumps(counts, ensure_ascii=False)}")


# --- say --------------------------------------------------------------------------------------
@main.command()
@click.argument("text")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=Path("say.wav"), show_default=True
)
def say(text: str, output: Path) -> None:
    """Render TEXT as the caller would hear it (8 kHz telephone audio) into a WAV file."""
    from hotline.audio import ulaw_to_pcm16, write_wav
    from hotline.speech.normalize import normalize_for_speech
    from hotline.speech.tts import Synthesizer

    settings = _settings()
    tts = Synthesizer(
        settings.tts_cache_dir,
        voice=settings.tts_voice,
        rate=settings.tts_rate,
        volume=settings.tts_volume,
    )
    tts.start()
    try:
        ulaw = tts.render(text)
    finally:
        tts.close()
    write_wav(output, ulaw_to_pcm16(ulaw))
    click.echo(f"{normalize_for_speech(text)}\n-> {output} ({len(ulaw) / 8000:.1f} s)")


def _register() -> None:
    from hotline.nlu.cli import nlu
    from hotline.tickets.cli import incidents_cli, tickets

    main.add_command(tickets)
    main.add_command(incidents_cli, "incidents")
    main.add_command(nlu)
    try:
        from hotline.console.cli import operators
    except ImportError:  # until the console lands
        return
    main.add_command(operators)


_register()
