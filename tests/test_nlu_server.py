"""The Rasa supervisor and the `hotline nlu` CLI, with the real Rasa.

The restart test kills the shared session server and waits until it is back, so it runs last
in this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotline.config import Settings
from hotline.nlu.cli import nlu
from hotline.nlu.client import SyncNLUClient
from hotline.nlu.server import RasaServer, free_port
from hotline.nlu.train import NLUSetupError, TrainResult, latest_model
from tests.nlu_fixtures import *  # noqa: F403 - session fixtures
from tests.nlu_fixtures import ThreadedRasaServer

pytestmark = pytest.mark.nlu


def _env(settings: Settings, url: str) -> dict[str, str]:
    return {
        "HOTLINE_DATA_DIR": str(settings.data_dir),
        "HOTLINE_NLU_URL": url,
        "HOTLINE_NLU_TOKEN": settings.nlu_auth_token,
        "HOTLINE_NLU_MODEL_DIR": str(settings.nlu_model_dir),
    }


async def test_missing_rasa_venv_is_a_clear_error(tmp_path: Path, nlu_settings: Settings) -> None:
    server = RasaServer(
        rasa_bin=tmp_path / ".venv-rasa" / "bin" / "rasa",
        model_dir=nlu_settings.nlu_model_dir,
        token="t",
        port=free_port(),
    )
    with pytest.raises(NLUSetupError, match="make nlu"):
        await server.start()
    assert server.status()["state"] == "stopped"


async def test_missing_model_is_a_clear_error(tmp_path: Path, nlu_settings: Settings) -> None:
    server = RasaServer(
        rasa_bin=nlu_settings.rasa_bin, model_dir=tmp_path, token="t", port=free_port()
    )
    with pytest.raises(NLUSetupError, match="hotline nlu train"):
        await server.start()


def test_train_is_a_noop_when_current(nlu_settings: Settings, nlu_model: TrainResult) -> None:
    result = CliRunner().invoke(nlu, ["train"], env=_env(nlu_settings, "http://127.0.0.1:1"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("up to date: ")
    assert str(latest_model(nlu_settings.nlu_model_dir.resolve())) in result.output


def test_cli_parse_argument_and_stdin(
    nlu_settings: Settings, rasa_server: ThreadedRasaServer
) -> None:
    env = _env(nlu_settings, rasa_server.url)
    one = CliRunner().invoke(
        nlu, ["parse", "mã phản ánh của tui là một hai ba bốn năm sáu"], env=env
    )
    assert one.exit_code == 0, one.output
    obj = json.loads(one.output.strip())
    assert set(obj) == {"text", "intent", "entities", "intent_ranking"}
    assert obj["intent"]["name"] == "ask_ticket_status"
    assert 0 < obj["intent"]["confidence"] <= 1
    code = [e for e in obj["entities"] if e["entity"] == "ticket_code"]
    assert code and code[0]["value"] == "123456"
    assert obj["text"][code[0]["start"] : code[0]["end"]] == code[0]["text"]

    stdin = "alo chào tổng đài\n\nmất điện ở xã cam thành\nthôi chào nghe\n"
    many = CliRunner().invoke(nlu, ["parse"], input=stdin, env=env)
    assert many.exit_code == 0, many.output
    lines = [json.loads(ln) for ln in many.output.splitlines()]
    assert [o["intent"]["name"] for o in lines] == ["greet", "report_utilities", "goodbye"]
    loc = lines[1]["entities"][0]
    assert loc["entity"] == "location" and loc["normalized"]["new_unit"] == "Xã Cam Lộ"


def test_cli_parse_without_a_server_starts_a_temporary_one(
    nlu_settings: Settings, nlu_model: TrainResult
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        nlu, ["parse", "cho tui gặp người thật"], env=_env(nlu_settings, dead)
    )
    assert result.exit_code == 0, result.output
    assert "starting a temporary one" in result.output
    obj = json.loads(result.output.strip().splitlines()[-1])
    assert obj["intent"]["name"] == "request_human"


def test_cli_eval_meets_the_targets(nlu_settings: Settings, nlu_model: TrainResult) -> None:
    out = nlu_settings.data_dir / "nlu-eval"
    result = CliRunner().invoke(nlu, ["eval", "--out", str(out)], env=_env(nlu_settings, "x"))
    assert result.exit_code == 0, result.output
    figures = dict(
        ln.split(": ", 1)
        for ln in result.output.splitlines()
        if ln.startswith(("accuracy", "macro"))
    )
    assert float(figures["accuracy"]) >= 0.92
    assert float(figures["macro-F1"]) >= 0.90
    report = json.loads((out / "intent_report.json").read_text())
    assert {"report_utilities", "emergency", "out_of_scope"} <= set(report)
    assert (out / "intent_confusion_matrix.png").stat().st_size > 1000


def test_supervisor_restarts_a_dead_rasa(rasa_server: ThreadedRasaServer) -> None:
    before = rasa_server.status()
    assert before["state"] == "ready"
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while rasa_server.status()["state"] == "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rasa_server.status()["state"] in ("down", "starting")
    rasa_server.call(rasa_server.server.wait_ready(180), timeout=190)
    after = rasa_server.status()
    assert after["state"] == "ready"
    assert after["restarts"] == before["restarts"] + 1
    assert after["pid"] != before["pid"]
    assert after["last_exit"] == -signal.SIGKILL
    with SyncNLUClient(rasa_server.url, rasa_server.token, 5.0) as c:
        assert c.parse("cứu với có người chết đuối").intent == "emergency"


def test_stop_terminates_the_process(nlu_settings: Settings, nlu_model: TrainResult) -> None:
    # A second, private server: start, stop, and the pid must be gone.
    server = RasaServer.from_settings(
        nlu_settings, port=free_port(), log_path=nlu_settings.data_dir / "rasa-2.log"
    )

    async def run() -> int:
        await server.start()
        pid = server.status()["pid"]
        await server.stop()
        return pid

    pid = asyncio.run(run())
    assert server.status()["state"] == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
