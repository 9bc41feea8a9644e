"""X-Twilio-Signature checks with the twilio library's RequestValidator."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"


class SignatureChecker:
    """Verifies that a request came from Twilio for our public URL.

    Twilio signs the URL it was configured with (our public https URL), not the URL uvicorn
    sees behind a proxy, so the URL is rebuilt from HOTLINE_PUBLIC_URL plus the request path.
    """

    def __init__(self, auth_token: str, base_url: str, *, enabled: bool = True) -> None:
        self._validator = RequestValidator(auth_token)
        self.base_url = base_url.rstrip("/")
        self.enabled = enabled

    def url_for(self, path: str, query: str = "") -> str:
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    def valid(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        if not self.enabled:
            return True
        if not signature:
            return False
        try:
            return bool(self._validator.validate(url, dict(params), signature))
        except Exception:  # a malformed header must not become a 500
            log.exception("signature check failed with an error")
            return False


def sign(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """What Twilio would put in X-Twilio-Signature (used by the replay client and tests)."""
    return RequestValidator(auth_token).compute_signature(url, dict(params or {}))
