"""The `hotline` command: serve, replay, calls, say; tickets, nlu and operators from their modules."""

from __future__ import annotations

import asyncio
import json
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


# --- serve ------------------------------------------------------------------------------------
@main.command()
@click.option("--host", help="Interface to listen on (HOTLINE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port (HOTLINE_PORT, default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the hotline: Twilio webhooks, media streams, console, and the Rasa server."""
    import uvicorn

    from hotline.app import DrainingServer, create_app
    from hotline.logs import setup_logging

    settings = _settings(host=host, port=port)
    setup_logging(settings.log_level)
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
def replay(
    wavs: tuple[Path, ...],
    url: str | None,
    public_url: str | None,
    dtmf: str,
    fast: bool,
    as_json: bool,
    check: bool,
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
    failed = 0
    outputs = []
    for wav in wavs:
        rec = Recording.load(wav)
        try:
            result = asyncio.run(client.call(rec, dtmf=parse_dtmf_option(dtmf)))
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
    for t in s["turns"]:
        who = "caller" if t["speaker"] == "caller" else "bot   "
        intent = f" [{t['intent']}]" if t.get("intent") else ""
        click.echo(f"   {who} {t['text']}{intent}")
    if s.get("ticket"):
        click.echo(
            f"   ticket {s['ticket']['code']} {s['ticket']['category']} -> "
            f"{s['ticket'].get('agency_name')} ({s['ticket']['status']})"
        )
    for p in s.get("problems", []):
        click.echo(f"   PROBLEM: {p}")


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
    from hotline.tickets.cli import tickets

    main.add_command(tickets)
    main.add_command(nlu)
    try:
        from hotline.console.cli import operators
    except ImportError:  # until the console lands
        return
    main.add_command(operators)


_register()
