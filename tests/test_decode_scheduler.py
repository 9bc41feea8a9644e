"""The decode scheduler: a call's recogniser jobs in order, the waiting caller's final first."""

from __future__ import annotations

import threading
import time

import pytest

from hotline.speech.scheduler import AUDIO, FINAL, DecodeScheduler


@pytest.fixture
def one_worker():
    sched = DecodeScheduler(workers=1)
    yield sched
    sched.shutdown()


def block(sched: DecodeScheduler) -> threading.Event:
    """Occupy the only worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(5)

    sched.lane("blocker").submit(hold)
    assert started.wait(5)
    return release


def test_a_lanes_jobs_run_one_at_a_time_in_order() -> None:
    sched = DecodeScheduler(workers=4)
    lane = sched.lane("call")
    ran: list[int] = []
    running = [0]
    overlap = []

    def job(i: int) -> int:
        running[0] += 1
        overlap.append(running[0])
        time.sleep(0.002)
        ran.append(i)
        running[0] -= 1
        return i

    futures = [lane.submit(job, i) for i in range(30)]
    assert [f.result(5) for f in futures] == list(range(30))
    assert ran == list(range(30)) and max(overlap) == 1
    sched.shutdown()


def test_a_waiting_callers_final_runs_before_other_calls_routine_decoding(one_worker) -> None:
    release = block(one_worker)
    order: list[str] = []
    others = [one_worker.lane(f"call{i}") for i in range(5)]
    for i, lane in enumerate(others):
        lane.accept(lambda audio, i=i: order.append(f"audio{i}"), b"\0\0")
    waiting = one_worker.lane("waiting")
    waiting.accept(lambda audio: order.append("waiting-audio"), b"\0\0")
    final = waiting.submit(lambda: order.append("waiting-final"), priority=FINAL)
    release.set()
    final.result(5)
    # The final's lane went first (its own audio before the final, as it must), ahead of
    # the five calls queued earlier.
    assert order[:2] == ["waiting-audio", "waiting-final"], order


def test_audio_queued_behind_a_busy_worker_is_decoded_in_one_call(one_worker) -> None:
    release = block(one_worker)
    calls: list[bytes] = []
    lane = one_worker.lane("call")
    futures = [lane.accept(calls.append, bytes([i]) * 4) for i in range(3)]
    release.set()
    for f in futures:
        f.result(5)
    assert calls == [b"\x00" * 4 + b"\x01" * 4 + b"\x02" * 4]
    assert one_worker.stats.merged_audio == 2


def test_audio_after_a_final_is_not_merged_into_audio_before_it(one_worker) -> None:
    release = block(one_worker)
    seen: list[object] = []
    lane = one_worker.lane("call")
    lane.accept(seen.append, b"a")
    lane.submit(lambda: seen.append("final"), priority=FINAL)
    last = lane.accept(seen.append, b"b")
    release.set()
    last.result(5)
    assert seen == [b"a", "final", b"b"]


def test_partials_are_dropped_when_decoding_is_behind(one_worker) -> None:
    release = block(one_worker)
    for i in range(3):
        one_worker.lane(f"c{i}").accept(lambda audio: None, b"\0\0")
    assert one_worker.behind()
    assert one_worker.lane("live").partial(lambda: "text") is None
    assert one_worker.stats.dropped_partials == 1
    release.set()
    deadline = time.monotonic() + 5
    while one_worker.queued() and time.monotonic() < deadline:
        time.sleep(0.01)
    fut = one_worker.lane("live").partial(lambda: "text")
    assert fut is not None and fut.result(5) == "text"


def test_background_lanes_wait_for_live_calls(one_worker) -> None:
    release = block(one_worker)
    order: list[str] = []
    one_worker.lane("message", background=True).submit(
        lambda: order.append("message-final"), priority=FINAL
    )
    last = one_worker.lane("live").submit(lambda: order.append("live-audio"), priority=AUDIO)
    release.set()
    last.result(5)
    deadline = time.monotonic() + 5
    while len(order) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == ["live-audio", "message-final"]


def test_a_failing_job_reports_to_its_waiter_and_the_lane_goes_on(one_worker) -> None:
    lane = one_worker.lane("call")

    def boom() -> None:
        raise ValueError("decoder broke")

    bad = lane.submit(boom)
    good = lane.submit(lambda: 42)
    with pytest.raises(ValueError, match="decoder broke"):
        bad.result(5)
    assert good.result(5) == 42


def test_after_shutdown_jobs_fail_instead_of_hanging() -> None:
    sched = DecodeScheduler(workers=2)
    sched.shutdown()
    fut = sched.lane("late").submit(lambda: 1)
    with pytest.raises(RuntimeError, match="stopped"):
        fut.result(1)
