"""Shared fixtures: real servers on loopback, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hotline.schema  # noqa: F401  (every table, as the entry points register them)
from tests.nlu_fixtures import nlu_env, nlu_model, nlu_settings, rasa_server  # noqa: F401
from tests.servers import ROOT, TEST_ACCOUNT_SID, HotlineServer, TwilioRestStandIn, free_port

OPERATOR_NUMBER = "+842333888999"
SMS_FROM = "+12025550123"


@pytest.fixture(scope="session")
def twilio_rest() -> Iterator[TwilioRestStandIn]:
    server = TwilioRestStandIn().start()
    yield server
    server.stop()


def base_env(twilio_rest: TwilioRestStandIn) -> dict[str, str]:
    return {
        "HOTLINE_ASR": "sidecar",
        "HOTLINE_SIDECAR_DIR": str(ROOT / "recordings"),
        "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
        "HOTLINE_TWILIO_API_BASE": twilio_rest.url,
        "TWILIO_SMS_FROM": SMS_FROM,
        "HOTLINE_OPERATOR_NUMBER": OPERATOR_NUMBER,
        "HOTLINE_OPERATOR_HOURS": "always",
    }


@pytest.fixture(scope="session")
def plain_server(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: TwilioRestStandIn
) -> Iterator[HotlineServer]:
    """A hotline without NLU (its Rasa URL points at a closed port): for the telephony layer."""
    env = base_env(twilio_rest) | {
        "HOTLINE_PUBLIC_URL": "https://hotline.test",
        "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",
    }
    server = HotlineServer(tmp_path_factory.mktemp("plain"), env).start()
    yield server
    server.stop()
