"""Decode scheduling: every call's recogniser work on a few shared threads, the urgent first.

Decoding is CPU-bound and the machine has a core or two. One free-running thread per call
(sixteen calls, sixteen threads) thrashes: a caller who has just stopped talking waits behind
fifteen other calls' routine decoding. Here each call has a `Lane` (its jobs run one at a time,
in order, since a recogniser stream is not re-entrant) and `workers` threads (the cores) pick
the lane whose most urgent job matters most:

- FINAL: a caller stopped talking and waits for the answer (the final pass, the end-of-turn
  model). A final lifts the lane's earlier jobs with it: its audio must be decoded first.
- AUDIO: feeding audio as it arrives (decoding runs inside `accept` every ~0.4 s of audio).
- PARTIAL: the live view in the console only. Dropped when the workers are behind.
- BACKGROUND lanes (voice messages left when the line is full) run only when nothing else
  waits: a message is not waited on, a live caller is.

Consecutive audio jobs of a lane are merged into one `accept` call (fewer, larger decodes, and
no queue of 20 ms jobs behind a slow one). viet-asr has no entry point that decodes several
streams in one call (its API is one session per stream), so batching across streams is not
available to try; merging within a stream is.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FINAL = 0
AUDIO = 1
PARTIAL = 2
BACKGROUND = 10  # added to every job of a background lane


@dataclass
class _Job:
    priority: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any]
    audio: bytearray | None = None  # an `accept` job: more audio may be merged into it


@dataclass
class SchedulerStats:
    merged_audio: int = 0  # audio jobs folded into an earlier one
    dropped_partials: int = 0


class Lane:
    """One call's recogniser work: submitted jobs run one at a time, in order."""

    def __init__(self, scheduler: DecodeScheduler, name: str, background: bool) -> None:
        self.scheduler = scheduler
        self.name = name
        self.background = background
        self.jobs: deque[_Job] = deque()
        self.running = False
        self.closed = False

    def urgency(self) -> int:
        """The most urgent queued job's priority (a final makes its whole lane urgent)."""
        base = BACKGROUND if self.background else 0
        return base + min((j.priority for j in self.jobs), default=PARTIAL)

    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = AUDIO) -> Future[Any]:
        return self.scheduler._submit(self, _Job(priority, fn, args, Future()))

    def accept(self, fn: Callable[[bytes], Any], audio: bytes) -> Future[Any]:
        """Feed audio; merged with the lane's previous audio job if that has not started."""
        return self.scheduler._submit(
            self, _Job(AUDIO, fn, (), Future(), audio=bytearray(audio)), merge=True
        )

    def partial(self, fn: Callable[[], Any]) -> Future[Any] | None:
        """A partial transcript for the live view, or None when the workers are behind."""
        if self.scheduler.behind():
            with self.scheduler._lock:
                self.scheduler.stats.dropped_partials += 1
            return None
        return self.submit(fn, priority=PARTIAL)

    def close(self) -> None:
        """No more jobs; the queued ones still run (a final already asked for is delivered)."""
        self.closed = True


class DecodeScheduler:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._heap: list[tuple[int, int, Lane]] = []
        self._waiting: set[Lane] = set()  # lanes with jobs, not running
        self._seq = itertools.count()
        self._busy = 0
        self._stopping = False
        self.stats = SchedulerStats()
        self._threads = [
            threading.Thread(target=self._run, name=f"decode-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def lane(self, name: str, *, background: bool = False) -> Lane:
        return Lane(self, name, background)

    def behind(self) -> bool:
        """More lanes wait than there are idle workers: decoding is not keeping up."""
        return len(self._waiting) > self.workers - self._busy

    def queued(self) -> int:
        """Calls whose decoding waits for a worker."""
        return len(self._waiting)

    def _submit(self, lane: Lane, job: _Job, merge: bool = False) -> Future[Any]:
        with self._lock:
            if self._stopping:
                job.future.set_exception(RuntimeError("decode scheduler stopped"))
                return job.future
            last = lane.jobs[-1] if lane.jobs else None
            if merge and last is not None and last.audio is not None and job.audio is not None:
                last.audio += job.audio
                self.stats.merged_audio += 1
                return last.future
            lane.jobs.append(job)
            if not lane.running:
                # Pushed again even if already queued: a final lifts the lane's urgency.
                self._waiting.add(lane)
                heapq.heappush(self._heap, (lane.urgency(), next(self._seq), lane))
                self._ready.notify()
        return job.future

    def _run(self) -> None:
        while True:
            with self._lock:
                lane = self._next_lane()
                if lane is None:
                    return
                job = lane.jobs.popleft()
                lane.running = True
                self._busy += 1
            try:
                if job.future.set_running_or_notify_cancel():
                    # An audio job's audio is read when it runs: what was merged into it too.
                    args = (bytes(job.audio),) if job.audio is not None else job.args
                    try:
                        job.future.set_result(job.fn(*args))
                    except BaseException as exc:  # delivered to whoever waits on it
                        job.future.set_exception(exc)
            finally:
                with self._lock:
                    self._busy -= 1
                    lane.running = False
                    if lane.jobs:
                        self._waiting.add(lane)
                        heapq.heappush(self._heap, (lane.urgency(), next(self._seq), lane))
                        self._ready.notify()

    def _next_lane(self) -> Lane | None:
        """Block until a lane with work is available (lock held); None when stopping."""
        while True:
            while self._heap:
                _, _, lane = heapq.heappop(self._heap)
                if not lane.running and lane.jobs:
                    # A lane can be queued twice (a final arrived and lifted it): the most
                    # urgent entry wins, the other is skipped when it surfaces.
                    self._waiting.discard(lane)
                    return lane
            if self._stopping:
                return None
            self._ready.wait()

    def shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            self._ready.notify_all()
        for t in self._threads:
            t.join(timeout=5)
