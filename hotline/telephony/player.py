"""Outbound audio: paced playback to Twilio with a mark after each prompt, and barge-in clear.

The clock is the caller's audio: Twilio sends a 20 ms media frame every 20 ms, so the count of
inbound frames is the call's timeline (wall time is the floor if inbound audio stalls). Pacing
against it keeps only a short lead buffered at Twilio, so a `clear` cuts a prompt within
about LEAD_FRAMES * 20 ms, and a replay sent faster than real time stays consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hotline.audio import FRAME_BYTES_ULAW, frames, ulaw_to_pcm16

log = logging.getLogger(__name__)

LEAD_FRAMES = 10  # 200 ms ahead of what the caller is hearing
# A mark still not echoed this long after its audio should have played has been lost (or the
# client never echoes): the no-input clock stops waiting for it.
MARK_GRACE_FRAMES = 100


@dataclass
class _Frame:
    ulaw: bytes
    prompt: str
    on_start: Callable[[], None] | None = None  # called when this first frame goes on the wire


@dataclass
class _MarkItem:
    name: str


class Player:
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        build_media: Callable[[bytes], str],
        build_mark: Callable[[str], str],
        build_clear: Callable[[], str],
        on_played: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self._send = send_text
        self._media = build_media
        self._mark = build_mark
        self._clear = build_clear
        self._on_played = on_played  # (tick, pcm16) for the bot's recording track
        self._queue: deque[_Frame | _MarkItem] = deque()
        self._wake = asyncio.Event()
        self._t0 = time.monotonic()
        self.inbound_frames = 0
        self._buffer_end = 0  # tick at which Twilio will have played all we sent
        self._pending_record: deque[tuple[int, bytes]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self.outstanding_marks: list[str] = []  # sent to Twilio, not yet echoed back
        self.frames_sent = 0

    # --- clock ---
    def tick(self) -> int:
        wall = int((time.monotonic() - self._t0) / 0.02)
        return max(self.inbound_frames, wall)

    def on_inbound_frame(self) -> None:
        self.inbound_frames += 1
        self._flush_recording()
        if self._queue:
            self._wake.set()

    # --- API ---
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="player")

    def new_prompt_id(self, label: str) -> str:
        return f"p{next(self._ids)}-{label}"

    def enqueue(
        self, prompt_id: str, ulaw: bytes, on_start: Callable[[], None] | None = None
    ) -> None:
        """Queue a prompt's audio followed by its mark."""
        for i, chunk in enumerate(frames(ulaw, FRAME_BYTES_ULAW)):
            self._queue.append(_Frame(chunk, prompt_id, on_start if i == 0 else None))
        self._queue.append(_MarkItem(prompt_id))
        self._wake.set()

    @property
    def busy(self) -> bool:
        """Audio queued here or still playing at Twilio (marks not yet echoed)."""
        return bool(self._queue) or bool(self.outstanding_marks)

    @property
    def overdue(self) -> bool:
        """Marks are outstanding although all audio sent should have played MARK_GRACE_FRAMES
        ago: a stream that never echoes marks must not keep the call waiting forever."""
        return (
            bool(self.outstanding_marks)
            and not self._queue
            and self.tick() - self._buffer_end >= MARK_GRACE_FRAMES
        )

    def mark_echoed(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            self.outstanding_marks.remove(name)

    async def clear(self) -> list[str]:
        """Barge-in: drop what is queued here and what Twilio has buffered.

        Returns the prompt ids that were cut. Twilio echoes the marks of the audio it drops.
        """
        cut = {item.prompt for item in self._queue if isinstance(item, _Frame)}
        cut |= {item.name for item in self._queue if isinstance(item, _MarkItem)}
        cut |= set(self.outstanding_marks)
        self._queue.clear()
        now = self.tick()
        # Frames scheduled after now were never heard: keep them out of the recording.
        self._pending_record = deque((t, pcm) for t, pcm in self._pending_record if t < now)
        self._buffer_end = now
        await self._send(self._clear())
        return sorted(cut)

    async def drain(self, timeout: float) -> bool:
        """Wait until everything sent has been played (all marks echoed)."""
        deadline = time.monotonic() + timeout
        # A client that never echoes marks: stop waiting once the audio must have played.
        while self.busy and not self.overdue and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.busy

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._flush_recording(force=True)

    # --- internals ---
    def _flush_recording(self, force: bool = False) -> None:
        if not self._on_played:
            self._pending_record.clear()
            return
        now = self.tick()
        while self._pending_record and (force or self._pending_record[0][0] <= now):
            t, pcm = self._pending_record.popleft()
            self._on_played(t, pcm)

    async def _run(self) -> None:
        try:
            while not self._closed:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                now = self.tick()
                if self._buffer_end - now >= LEAD_FRAMES:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=0.02)
                    continue
                item = self._queue.popleft()
                if isinstance(item, _Frame):
                    start = max(self._buffer_end, now)
                    self._buffer_end = start + 1
                    self._pending_record.append((start, ulaw_to_pcm16(item.ulaw)))
                    self.frames_sent += 1
                    await self._send(self._media(item.ulaw))
                    if item.on_start is not None:
                        item.on_start()
                else:
                    self.outstanding_marks.append(item.name)
                    await self._send(self._mark(item.name))
        except asyncio.CancelledError:
            raise
        except Exception:
            # A closed socket ends playback; the stream handler records why the call ended.
            log.debug("player stopped", exc_info=True)
