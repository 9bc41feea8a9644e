"""In-process fan-out of live call events (partial transcripts, turns, state) to the console."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class LiveHub:
    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self.active: dict[str, dict[str, Any]] = {}  # call_sid -> summary of a call in progress

    def publish(self, event: dict[str, Any]) -> None:
        call_sid = event.get("call_sid")
        if call_sid:
            summary = self.active.setdefault(call_sid, {"call_sid": call_sid, "turns": []})
            kind = event.get("type")
            if kind == "call_started":
                summary.update({k: v for k, v in event.items() if k != "type"})
            elif kind == "turn":
                summary["turns"].append(event)
                summary["turns"] = summary["turns"][-50:]
            elif kind == "partial":
                summary["partial"] = event.get("text", "")
            elif kind == "state":
                summary["state"] = event.get("state")
            elif kind == "call_ended":
                self.active.pop(call_sid, None)
        for q in list(self._subscribers):
            # A slow console tab loses live updates rather than slowing a call down.
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.discard(q)
