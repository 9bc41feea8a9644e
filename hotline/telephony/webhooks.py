"""Twilio's HTTP webhooks: the voice webhook answers with TwiML, the status callback ends calls."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from hotline.calls import FINAL_STATUSES, add_event, caller_hash, mask_number, upsert_call
from hotline.store import now_iso
from hotline.telephony import twiml
from hotline.telephony.signature import SIGNATURE_HEADER

log = logging.getLogger(__name__)

router = APIRouter(prefix="/twilio")

XML = "application/xml"
MAX_FORM_BYTES = 64 * 1024


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


def _forbidden() -> Response:
    return Response(
        "Forbidden: invalid Twilio signature\n", status_code=403, media_type="text/plain"
    )


@router.post("/voice")
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

    def write(db: Any) -> None:
        upsert_call(
            db,
            call_sid,
            account_sid=form.get("AccountSid", ""),
            caller=caller,
            caller_hash=caller_hash(caller, services.settings.session_secret),
            called=form.get("To", ""),
            status=form.get("CallStatus", "ringing"),
            started_at=now_iso(),
        )
        add_event(db, call_sid, "voice_webhook", call_status=form.get("CallStatus"))

    await services.store.arun(write)
    log.info("call %s from %s: answering with a media stream", call_sid, mask_number(caller))
    body = twiml.connect_stream(
        services.settings.media_stream_url,
        {"callSid": call_sid, "caller": caller, "called": form.get("To", "")},
    )
    return Response(body, media_type=XML)


@router.post("/status")
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
        exists = db.table("calls").count_where("call_sid = ?", [call_sid])
        fields: dict[str, Any] = {"status": call_status}
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

    await services.store.arun(write)
    return Response(status_code=204)


@router.get("/calls/{call_sid}")
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

    call = await services.store.arun(read)
    if call is None:
        return Response('{"error": "no such call"}', status_code=404, media_type="application/json")
    return Response(
        json.dumps(call, ensure_ascii=False, default=str), media_type="application/json"
    )
