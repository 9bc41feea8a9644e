"""Twilio's REST API: redirect a live call (transfer) and send SMS. Blocking client, run in a thread."""

from __future__ import annotations

import asyncio
import logging

from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from hotline.calls import mask_number

log = logging.getLogger(__name__)


class TwilioRest:
    def __init__(
        self, account_sid: str, auth_token: str, api_base: str, sms_from: str = ""
    ) -> None:
        self.account_sid = account_sid
        self.sms_from = sms_from
        self._client: Client | None = None
        if account_sid and auth_token:
            self._client = Client(account_sid, auth_token)
            # Only tests change this, to a loopback stand-in for api.twilio.com.
            self._client.api.base_url = api_base.rstrip("/")

    @property
    def configured(self) -> bool:
        return self._client is not None

    @property
    def can_send_sms(self) -> bool:
        return self._client is not None and bool(self.sms_from)

    def _update_call(self, call_sid: str, twiml: str) -> bool:
        assert self._client is not None
        self._client.calls(call_sid).update(twiml=twiml)
        return True

    async def redirect_call(self, call_sid: str, twiml: str) -> bool:
        """Replace the live call's TwiML (for example with <Dial>). False when not possible."""
        if self._client is None:
            log.warning(
                "transfer of %s skipped: TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN not set", call_sid
            )
            return False
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._update_call, call_sid, twiml), 10)
        except (TwilioException, TimeoutError, OSError) as exc:
            log.error("transfer of %s failed: %s", call_sid, exc)
            return False

    def _send_sms(self, to: str, body: str) -> str:
        assert self._client is not None
        message = self._client.messages.create(to=to, from_=self.sms_from, body=body)
        return str(message.sid)

    async def send_sms(self, to: str, body: str) -> str | None:
        """Send an SMS; None (and a log line) when not configured or it failed."""
        if not self.can_send_sms:
            log.info("SMS to %s skipped: TWILIO_SMS_FROM or credentials not set", mask_number(to))
            return None
        if not to or not to.startswith("+"):
            log.info("SMS skipped: caller number %r is not a phone number", mask_number(to))
            return None
        try:
            sid = await asyncio.wait_for(asyncio.to_thread(self._send_sms, to, body), 10)
        except (TwilioException, TimeoutError, OSError) as exc:
            log.error("SMS to %s failed: %s", mask_number(to), exc)
            return None
        log.info("SMS %s sent to %s", sid, mask_number(to))
        return sid
