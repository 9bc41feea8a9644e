"""The FastAPI app: Twilio webhooks, the Media Streams WebSocket, health, and the console.

The lifespan loads everything a call needs once per process (recognizer model, synthesizer with
every fixed prompt rendered, call flows, knowledge base, routing table), starts and supervises
the Rasa server, and on shutdown waits for calls in progress to end before closing the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse

import hotline.schema  # noqa: F401  (registers every table)
from hotline.config import Settings
from hotline.live import LiveHub
from hotline.store import Store
from hotline.telephony.rest import TwilioRest
from hotline.telephony.signature import SignatureChecker
from hotline.telephony.stream import MediaStreamServer, TwilioCall

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0


@dataclass
class Services:
    settings: Settings
    store: Store
    checker: SignatureChecker
    rest: TwilioRest
    live: LiveHub
    media: MediaStreamServer | None = None
    asr: Any = None
    tts: Any = None
    flow: Any = None
    kb: Any = None
    router: Any = None
    nlu: Any = None
    nlu_server: Any = None
    started_at: float = field(default_factory=time.time)
    errors: dict[str, str] = field(default_factory=dict)

    def ready(self) -> bool:
        return all(x is not None for x in (self.media, self.asr, self.tts, self.flow))

    def health(self) -> dict[str, Any]:
        nlu_state = self.nlu_server.status() if self.nlu_server else {"state": "external"}
        return {
            "status": "ok" if self.ready() else "starting",
            "calls_active": len(self.media.active) if self.media else 0,
            "asr": getattr(self.asr, "name", None),
            "tts": self.tts is not None,
            "flows": self.flow is not None,
            "nlu": nlu_state,
            "signatures": "verified" if self.checker.enabled else "NOT VERIFIED (development)",
            "errors": self.errors,
        }


async def drain_calls(services: Services, timeout: float = SHUTDOWN_GRACE_S) -> None:
    """Stop taking calls; tell callers in progress and hang up, keeping every record."""
    media = services.media
    if media is None:
        return
    media.accepting = False
    log.info("shutting down: ending %d call(s) in progress", len(media.active))
    for call in list(media.active.values()):
        handler = call.extra.get("handler")
        if handler is not None and hasattr(handler, "shutdown"):
            asyncio.get_running_loop().create_task(handler.shutdown())
        else:
            await call.hangup("shutdown")
    deadline = time.monotonic() + timeout
    while media.active and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, first let calls in progress end politely, then stop uvicorn (which
    would otherwise close their sockets at once)."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        media = self.services.media
        if self._draining or media is None or not media.active:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain(sig, frame)))

    async def _drain(self, sig: int, frame: Any) -> None:
        await drain_calls(self.services)
        super().handle_exit(sig, frame)


def _load_components(services: Services) -> None:
    """Blocking loads, run in a worker thread at start."""
    from hotline.dialogue.flow import load_flows
    from hotline.dialogue.knowledge import KnowledgeBase
    from hotline.speech.recognizer import load_engine
    from hotline.speech.tts import Synthesizer
    from hotline.tickets.routing import Router

    s = services.settings
    services.kb = KnowledgeBase.load(s.call_flows_dir / "knowledge.yml")
    services.router = Router.load(s.call_flows_dir / "routing.yml")
    flow = load_flows(s.call_flows_dir)
    services.asr = load_engine(s)
    tts = Synthesizer(s.tts_cache_dir, voice=s.tts_voice, rate=s.tts_rate, volume=s.tts_volume)
    tts.start()
    texts = flow.fixed_texts() + services.kb.all_spoken_texts()
    t0 = time.monotonic()
    rendered = tts.prerender(texts)
    log.info(
        "rendered %d fixed prompts (%d new) in %.1f s", len(texts), rendered, time.monotonic() - t0
    )
    services.tts = tts
    services.flow = flow


def create_app(settings: Settings) -> FastAPI:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_path)
    services = Services(
        settings=settings,
        store=store,
        checker=SignatureChecker(
            settings.auth_token, settings.base_url, enabled=settings.verify_signatures
        ),
        rest=TwilioRest(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_api_base,
            settings.twilio_sms_from,
        ),
        live=LiveHub(),
    )

    def make_handler(call: TwilioCall) -> Any:
        from hotline.dialogue.session import CallSession

        return CallSession(call, services)

    async def transfer(call_sid: str, twiml_text: str) -> bool:
        return await services.rest.redirect_call(call_sid, twiml_text)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.verify_signatures:
            log.warning(
                "HOTLINE_VERIFY_SIGNATURES=false: Twilio signatures are NOT checked. "
                "Use this only on a development machine."
            )
        elif settings.using_dev_token:
            log.warning(
                "TWILIO_AUTH_TOKEN is not set: using the local development token in %s; "
                "real Twilio requests will be refused until it is set.",
                settings.data_dir / "dev-twilio-auth-token",
            )
        await asyncio.to_thread(_load_components, services)
        services.media = MediaStreamServer(
            checker=services.checker,
            stream_url=settings.media_stream_url,
            store=store,
            recordings_dir=settings.recordings_dir,
            handler_factory=make_handler,
            caller_secret=settings.session_secret,
            transfer_fn=transfer,
        )
        from hotline.nlu.client import NLUClient

        services.nlu = NLUClient(
            settings.nlu_url, settings.nlu_auth_token, timeout_s=settings.nlu_timeout_s
        )
        if settings.nlu_manage:
            from hotline.nlu.server import RasaServer

            services.nlu_server = RasaServer.from_settings(settings)
            try:
                # Rasa takes ~20 s to load; calls are taken meanwhile and degrade to the keypad
                # and operators until it answers.
                await services.nlu_server.start(wait=False)
            except Exception as exc:
                services.errors["nlu"] = str(exc)
                log.error("NLU server not started: %s", exc)
        from hotline.privacy import start_retention_task

        retention = start_retention_task(services)  # the retention settings, applied daily
        from hotline import outbox

        sender = asyncio.get_running_loop().create_task(
            outbox.run(store, services.rest, base_backoff_s=settings.outbox_retry_s)
        )
        log.info(
            "hotline ready on %s (stream URL %s)", settings.base_url, settings.media_stream_url
        )
        try:
            yield
        finally:
            retention.cancel()
            sender.cancel()
            await drain_calls(services, timeout=5)
            if services.nlu_server:
                await services.nlu_server.stop()
            if services.nlu:
                await services.nlu.aclose()
            if services.tts:
                services.tts.close()
            store.close()

    app = FastAPI(
        title="Quảng Trị hotline",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = services

    from hotline.telephony.webhooks import router as twilio_router

    app.include_router(twilio_router)
    from hotline.open311 import router as open311_router

    app.include_router(open311_router)

    @app.websocket("/twilio/media")
    async def media_stream(ws: WebSocket) -> None:
        if services.media is None:
            await ws.close(code=1013)
            return
        await services.media.handle(ws)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(services.health(), status_code=200 if services.ready() else 503)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    try:
        from hotline.console import mount_console
    except ImportError:  # the console lands in its own issue
        mount_console = None
    if mount_console is not None:
        mount_console(app, services)
    return app
