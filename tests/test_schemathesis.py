"""Fuzz the running server from its own OpenAPI document (issue 10, "no 5xx under schemathesis").

schemathesis generates requests for every operation in /openapi.json. Twilio's routes get a
valid X-Twilio-Signature for exactly the generated form (so the fuzz reaches the handlers, not
just the signature check) and the console's routes an admin's session cookie. The only check
is that nothing answers 5xx. Bounded: a few examples per operation, derandomized.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from hotline.telephony.signature import SIGNATURE_HEADER, sign
from tests.servers import HotlineServer
from tests.test_console_security import admin_server, session_cookie  # noqa: F401

EXAMPLES = 6


@pytest.fixture(scope="module")
def admin_cookie(admin_server: HotlineServer) -> str:  # noqa: F811
    return session_cookie(admin_server)


def test_no_server_error(admin_server: HotlineServer, admin_cookie: str) -> None:  # noqa: F811
    api = schemathesis.openapi.from_url(admin_server.url + "/openapi.json")
    headers = {"Cookie": f"hotline_session={admin_cookie}"}
    tried: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.label == "GET /healthz":
            # Its 503 is the readiness answer of a server without NLU, by design
            # (tests/test_readiness.py checks both answers); it takes no input to fuzz.
            continue
        tried.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            sent = dict(headers)
            path = case.formatted_path
            if path.startswith("/twilio/"):
                query = f"?{urlencode(case.query, doseq=True)}" if case.query else ""
                form = case.body if isinstance(case.body, dict) else {}
                params = {str(k): str(v) for k, v in form.items()}
                sent[SIGNATURE_HEADER] = sign(
                    admin_server.auth_token, admin_server.public_url + path + query, params
                )
                if case.headers:
                    case.headers.pop(SIGNATURE_HEADER, None)
            case.call_and_validate(
                base_url=admin_server.url, headers=sent, checks=[not_a_server_error], timeout=30
            )

        fuzz()
    assert "POST /twilio/voice" in tried and "GET /console/calls" in tried
