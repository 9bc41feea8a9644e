"""Session fixtures for the NLU: one real Rasa server per test session.

Use from a test module with `from tests.nlu_fixtures import *` (or, once the lead adds it,
`pytest_plugins = ["tests.nlu_fixtures"]` in the root conftest).

- `nlu_settings`: Settings for the test session (data dir in a temp dir, a fixed NLU token,
  a free loopback port in nlu_url); the model dir is the repo's nlu_models/models.
- `nlu_model`: the trained model; trains it when missing or stale (the same `train()` as
  `hotline nlu train`, a no-op when current).
- `rasa_server`: a `RasaServer` started once on that port, supervised from its own thread
  (its asyncio loop must keep running between tests so restarts work); stopped at the end.
- `nlu_env`: environment variables that point a hotline under test at that server
  (HOTLINE_NLU_URL, HOTLINE_NLU_TOKEN, HOTLINE_NLU_MANAGE=false).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hotline.config import Settings, load_settings
from hotline.nlu.server import RasaServer, free_port
from hotline.nlu.train import TrainResult, train

__all__ = ["ThreadedRasaServer", "nlu_env", "nlu_model", "nlu_settings", "rasa_server"]

NLU_TEST_TOKEN = "nlu-test-token"
T = TypeVar("T")

# `from tests.nlu_fixtures import *` in several modules registers these fixtures once per module,
# and pytest would then build a session fixture once per module (two Rasa servers). The cache
# makes every copy share one instance; the copy that created it tears it down.
_SESSION: dict[str, Any] = {}


class ThreadedRasaServer:
    """A RasaServer whose supervisor runs on an event loop in a background thread."""

    def __init__(self, server: RasaServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rasa-loop", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ThreadedRasaServer:
        self.call(self.server.start())
        return self

    def stop(self) -> None:
        try:
            self.call(self.server.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def status(self) -> dict[str, Any]:
        return self.server.status()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token


@pytest.fixture(scope="session")
def nlu_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    if "settings" not in _SESSION:
        data_dir: Path = tmp_path_factory.mktemp("nlu-data")
        _SESSION["settings"] = load_settings(
            data_dir=data_dir,
            nlu_url=f"http://127.0.0.1:{free_port()}",
            nlu_token=NLU_TEST_TOKEN,
            nlu_timeout_s=5.0,  # the first parse after load can take longer than a call's budget
        )
    return _SESSION["settings"]


@pytest.fixture(scope="session")
def nlu_model(nlu_settings: Settings) -> TrainResult:
    if "model" not in _SESSION:
        _SESSION["model"] = train(nlu_settings, quiet=True, echo=lambda _m: None)
    return _SESSION["model"]


@pytest.fixture(scope="session")
def rasa_server(nlu_settings: Settings, nlu_model: TrainResult) -> Iterator[ThreadedRasaServer]:
    if "server" in _SESSION:
        yield _SESSION["server"]
        return
    server = RasaServer.from_settings(
        nlu_settings,
        log_path=nlu_settings.data_dir / "rasa.log",
        probe_interval_s=2.0,
    )
    threaded = ThreadedRasaServer(server).start()
    _SESSION["server"] = threaded
    try:
        yield threaded
    finally:
        _SESSION.pop("server", None)
        threaded.stop()


@pytest.fixture(scope="session")
def nlu_env(rasa_server: ThreadedRasaServer) -> dict[str, str]:
    return {
        "HOTLINE_NLU_URL": rasa_server.url,
        "HOTLINE_NLU_TOKEN": rasa_server.token,
        "HOTLINE_NLU_MANAGE": "false",
    }
