"""The operators' web console under /console: calls, tickets, NLU corrections, dashboard,
live calls and the "Gọi thử" browser phone. `mount_console(app, services)` wires it in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI


def mount_console(app: FastAPI, services: Any) -> None:
    """Add the console's routes, static files and security headers to `app`.

    The Media Streams server exists only once the app's lifespan has started, so the console
    admits its browser phone there (services.media.extra_auth) from a wrapper around the
    lifespan rather than now."""
    from hotline.console.web import install

    console = install(app, services)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            if services.media is not None:
                services.media.extra_auth = console.stream_auth
            yield state

    app.router.lifespan_context = lifespan


__all__ = ["mount_console"]
