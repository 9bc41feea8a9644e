"""Twilio's HTTP webhooks: the voice webhook answers with TwiML, the status callback ends calls."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from typing import Any

from fastapi import APIRouter, Request, Response

from hotline.calls import (
    FINAL_STATUSES,
    add_event,
    caller_hash,
    mask_number,
    ring_call,
    upsert_call,
)
from hotline.store import now_iso
from hotline.telephony import twiml
from hotline.telephony.credentials import MODE_PARAMETER, PARAMETER, StreamCredentials
from hotline.telephony.signature import SIGNATURE_HEADER

log = logging.getLogger(__name__)

router = APIRouter(prefix="/twilio")

XML = "application/xml"
MAX_FORM_BYTES = 64 * 1024
# A full or failing disk (SQLite reports it as sqlite3.OperationalError) must not become a 500.
STORAGE_ERRORS = (OSError, sqlite3.Error)
STORAGE_APOLOGY = (
    "Xin lỗi quý vị, tổng đài đang gặp sự cố kỹ thuật nên chưa ghi nhận được cuộc gọi. "
    "Quý vị vui lòng gọi lại sau ít phút."
)
STORAGE_APOLOGY_TRANSFER = (
    "Xin lỗi quý vị, tổng đài tự động đang gặp sự cố kỹ thuật. "
    "Xin quý vị giữ máy, cuộc gọi được chuyển tới điện thoại viên."
)


# Past HOTLINE_MAX_CALLS and the overflow streams' own cap: Twilio's voice says it, then hangs up.
BUSY_APOLOGY = (
    "Xin lỗi quý vị, hiện tất cả các đường dây của tổng đài đều đang bận. "
    "Quý vị vui lòng gọi lại sau ít phút. Xin cảm ơn quý vị."
)


def _storage_apology(services: Any) -> str:
    """What a caller hears when we cannot record the call: a person if one is on duty (as a
    switchboard whose automation fails hands callers to its staff), else an apology."""
    from hotline.dialogue.session import operators_on_duty

    s = services.settings
    if s.operator_number and operators_on_duty(s.operator_hours, s.timezone):
        return twiml.apology(STORAGE_APOLOGY_TRANSFER, s.operator_number)
    return twiml.apology(STORAGE_APOLOGY)


def connect_twiml(services: Any, call_sid: str, mode: str = "live") -> str:
    """<Connect><Stream> with this call's single-use stream credential, bound to its mode."""
    token = StreamCredentials.from_settings(services.settings).issue(call_sid, mode=mode)
    params = {"callSid": call_sid, PARAMETER: token}
    if mode != "live":
        params[MODE_PARAMETER] = mode
    return twiml.connect_stream(services.settings.media_stream_url, params)


async def _verified_form(request: Request) -> dict[str, str] | None:
    """The form, if X-Twilio-Signature matches our public URL and these parameters."""
    services = request.app.state.services
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    try:
        form = await request.form()
    except Exception:
        return None
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    url = services.checker.url_for(request.url.path, request.url.query)
    if not services.checker.valid(url, params, request.headers.get(SIGNATURE_HEADER)):
        log.warning(
            "refused %s from %s: bad or missing X-Twilio-Signature",
            request.url.path,
            request.client.host if request.client else "?",
        )
        return None
    return params


def _form_schema(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAPI for a Twilio form post (the handlers read the raw form to check its signature)."""
    fields = {name: {"type": "string"} for name in (*required, *optional)}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": fields,
                        "required": list(required),
                        "additionalProperties": False,
                    }
                }
            },
        },
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            }
        ],
    }


VOICE_FORM = ("CallSid", "AccountSid", "From", "To", "CallStatus", "Direction")


def _forbidden() -> Response:
    return Response(
        "Forbidden: invalid Twilio signature\n", status_code=403, media_type="text/plain"
    )


@router.post("/voice", openapi_extra=_form_schema("CallSid", optional=VOICE_FORM[1:]))
async def voice(request: Request) -> Response:
    form = await _verified_form(request)
    if form is None:
        return _forbidden()
    services = request.app.state.services
    call_sid = form.get("CallSid", "")
    caller = form.get("From", "")
    if not call_sid:
        return Response("CallSid is required\n", status_code=400, media_type="text/plain")
    if not services.ready():
        log.warning("call %s from %s rejected: service not ready", call_sid, mask_number(caller))
        return Response(twiml.reject_busy(), media_type=XML)

    def write(db: Any) -> str:
        return ring_call(
            db,
            call_sid,
            account_sid=form.get("AccountSid", ""),
            caller=caller,
            caller_hash=caller_hash(caller, services.settings.session_secret),
            called=form.get("To", ""),
        )

    try:
        state = await services.store.arun(write)
    except STORAGE_ERRORS as exc:
        log.error("call %s: cannot record the call (%s); apologising", call_sid, exc)
        return Response(_storage_apology(services), media_type=XML)
    if state not in ("new", "ringing"):
        # Twilio asked again about a call already under way or over (a retry, or a replayed
        # request): nothing is reset, and no second stream is offered.
        log.warning("call %s: voice webhook repeated while %s; answering hang-up", call_sid, state)
        return Response(twiml.hangup(), media_type=XML)
    admission = getattr(services, "admission", None)
    decision = admission.decide(call_sid) if admission is not None else "live"
    if decision != "live":
        return await _overflow(services, call_sid, caller, decision, first=state == "new")
    log.info("call %s from %s: answering with a media stream", call_sid, mask_number(caller))
    return Response(connect_twiml(services, call_sid), media_type=XML)


async def _overflow(
    services: Any, call_sid: str, caller: str, decision: str, *, first: bool
) -> Response:
    """A call past HOTLINE_MAX_CALLS: an overflow stream (busy prompt, voice message), or past
    the overflow cap too, a <Say> busy message. Either way the call is marked as overflow, on
    its first webhook only (a replayed one must not grow the database)."""
    admission = services.admission
    live, limit = admission.count("live"), admission.max_calls
    answer = "stream" if decision == "overflow" else "say"
    log.warning(
        "call %s from %s: overflow (%d/%d live calls, %d overflow); answering with %s",
        call_sid,
        mask_number(caller),
        live,
        limit,
        admission.count("overflow"),
        "the busy prompt and a voice message" if answer == "stream" else "a <Say> busy message",
    )

    def write(db: Any) -> None:
        upsert_call(db, call_sid, outcome="overflow")
        add_event(db, call_sid, "overflow", live=live, limit=limit, answer=answer)

    if first:
        try:
            await services.store.arun(write)
        except STORAGE_ERRORS as exc:  # the call was recorded a moment ago; the caller hears
            log.error("call %s: overflow not stored: %s", call_sid, exc)
    if decision == "overflow":
        return Response(connect_twiml(services, call_sid, "overflow"), media_type=XML)
    return Response(twiml.apology(BUSY_APOLOGY), media_type=XML)


@router.post(
    "/status",
    openapi_extra=_form_schema(
        "CallSid", "CallStatus", optional=(*VOICE_FORM[1:4], "CallDuration")
    ),
)
async def status(request: Request) -> Response:
    form = await _verified_form(request)
    if form is None:
        return _forbidden()
    services = request.app.state.services
    call_sid = form.get("CallSid", "")
    call_status = form.get("CallStatus", "")
    if not call_sid or not call_status:
        return Response(
            "CallSid and CallStatus are required\n", status_code=400, media_type="text/plain"
        )

    def write(db: Any) -> None:
        rows = list(db.query("SELECT status FROM calls WHERE call_sid = ?", [call_sid]))
        exists = bool(rows)
        fields: dict[str, Any] = {"status": call_status}
        if exists and rows[0]["status"] in FINAL_STATUSES and call_status not in FINAL_STATUSES:
            # A late or replayed callback never brings an ended call back to life.
            add_event(db, call_sid, "status_callback_ignored", call_status=call_status)
            return
        if call_status in FINAL_STATUSES:
            row = next(
                iter(
                    db.query("SELECT ended_at, outcome FROM calls WHERE call_sid = ?", [call_sid])
                ),
                {},
            )
            if not row.get("ended_at"):
                fields["ended_at"] = now_iso()
            if call_status != "completed" and not row.get("outcome"):
                fields["outcome"] = "not_answered"
            if form.get("CallDuration"):
                with contextlib.suppress(ValueError):
                    fields["duration_s"] = float(form["CallDuration"])
        if not exists:
            fields["caller"] = form.get("From", "")
            fields["caller_hash"] = caller_hash(
                form.get("From", ""), services.settings.session_secret
            )
        upsert_call(db, call_sid, **fields)
        add_event(db, call_sid, "status_callback", call_status=call_status)

    if call_status in FINAL_STATUSES and getattr(services, "admission", None) is not None:
        # The call is over for Twilio: its slot is free even if its stream never ended here.
        services.admission.release(call_sid)

    try:
        await services.store.arun(write)
    except STORAGE_ERRORS as exc:
        log.error("call %s: status %s not stored: %s", call_sid, call_status, exc)
        return Response(
            "Storage unavailable\n",
            status_code=503,
            media_type="text/plain",
            headers={"Retry-After": "30"},
        )
    return Response(status_code=204)


@router.get(
    "/calls/{call_sid}",
    openapi_extra={
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            }
        ]
    },
)
async def call_outcome(call_sid: str, request: Request) -> Response:
    """A call's record, for the replay stand-in: signed like a webhook with the auth token, so
    only whoever holds Twilio's secret (the operators of this line) can read it."""
    services = request.app.state.services
    url = services.checker.url_for(request.url.path, request.url.query)
    if not services.checker.valid(url, {}, request.headers.get(SIGNATURE_HEADER)):
        return _forbidden()
    from hotline.calls import get_call
    from hotline.tickets import store as tickets

    def read(db: Any) -> dict[str, Any] | None:
        call = get_call(db, call_sid)
        if call is None:
            return None
        call["ticket"] = (
            tickets.get_ticket(db, call["ticket_code"]) if call.get("ticket_code") else None
        )
        call["tickets"] = list(
            db.query(
                "SELECT * FROM tickets WHERE call_sid = ? AND confirmed = 1 ORDER BY id", [call_sid]
            )
        )
        call["drafts"] = [
            t
            for t in db.query(
                "SELECT * FROM tickets WHERE call_sid = ? AND confirmed = 0", [call_sid]
            )
        ]
        return call

    try:
        call = await services.store.arun(read)
    except STORAGE_ERRORS:
        return Response('{"error": "storage unavailable"}', 503, media_type="application/json")
    if call is None:
        return Response('{"error": "no such call"}', status_code=404, media_type="application/json")
    return Response(
        json.dumps(call, ensure_ascii=False, default=str), media_type="application/json"
    )
