"""Calls for the fault tests: the Twilio stand-in, kept usable when the server dies mid-call.

`ObservedStandIn` is the stand-in of hotline/replay.py that keeps each call's `ReplayResult`
even when the server is killed (the status callback then fails), and notes how much bot audio
had arrived when each mark arrived, so a test can tell what the caller heard after a prompt.
`report_recording` writes a scripted report call (real speech from recordings/, confirmed on
the keypad, so the path does not depend on how "đúng rồi" is classified).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.exceptions import WebSocketException

from hotline.replay import Recording, ReplayResult, TwilioStandIn
from tests.servers import ROOT

REPORT_TEXT = "nhà tui ở thôn an hưng xã triệu phong mất điện từ sáng tới chừ"


class MarkLog(list):  # type: ignore[type-arg]
    """`ReplayResult.marks_received` that also records the audio received at each mark."""

    def __init__(self, result: ReplayResult, on_mark: Callable[[str], None] | None) -> None:
        super().__init__()
        self.result = result
        self.media_at: list[int] = []
        self.on_mark = on_mark

    def append(self, name: str) -> None:
        super().append(name)
        self.media_at.append(self.result.media_received)
        if self.on_mark is not None:
            self.on_mark(name)

    def media_after_last(self, label: str) -> int | None:
        """Media messages received after the last mark of prompt `label` (None: never sent)."""
        idx = [i for i, m in enumerate(self) if m.endswith(f"-{label}")]
        if not idx:
            return None
        return self.result.media_received - self.media_at[idx[-1]]

    def labels_after_last(self, label: str) -> list[str]:
        idx = [i for i, m in enumerate(self) if m.endswith(f"-{label}")]
        if not idx:
            return []
        return [m.split("-", 1)[1] for m in self[idx[-1] + 1 :]]


class ObservedStandIn(TwilioStandIn):
    def __init__(
        self, *args: Any, on_mark: Callable[[str, str], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.results: dict[str, ReplayResult] = {}
        self.on_mark = on_mark

    async def _stream(
        self, rec: Any, stream_url: str, params: Any, result: ReplayResult, dtmf: Any
    ) -> None:  # type: ignore[override]
        self.results[result.call_sid] = result
        hook = None
        if self.on_mark is not None:
            sid = result.call_sid
            hook = lambda name: self.on_mark(sid, name)  # noqa: E731
        result.marks_received = MarkLog(result, hook)
        await super()._stream(rec, stream_url, params, result, dtmf)

    async def observed_call(self, rec: Recording) -> ReplayResult | None:
        """Place a call; its result, even if the server died on the way (None: no webhook)."""
        before = set(self.results)
        # The server may die at any point: a refused connection, a closed socket.
        with contextlib.suppress(httpx.HTTPError, OSError, RuntimeError, WebSocketException):
            await self.call(rec)
        new = [sid for sid in self.results if sid not in before]
        return self.results[new[0]] if new else None


def report_recording(directory: Path, caller: str = "+84905000777") -> Recording:
    """A report call: speak the report (with its place), confirm with key 1, hear the code,
    hang up. Its sidecar also feeds the sidecar recogniser (HOTLINE_SIDECAR_DIR=directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    wav = directory / "fault_report.wav"
    shutil.copyfile(ROOT / "recordings" / "power_cut_with_place.wav", wav)
    sidecar = {
        "description": "fault tests: report, confirm on the keypad, hear the code, hang up",
        "caller": caller,
        "asr": "sidecar",
        "turns": [
            {"text": REPORT_TEXT, "at": 1.0, "end": 5.47},
            {"dtmf": "1"},
            {"dtmf": "", "hangup": True, "pause": 0.3},
        ],
    }
    (directory / "fault_report.yml").write_text(
        yaml.safe_dump(sidecar, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return Recording.load(wav)


def told_a_code(result: ReplayResult) -> bool:
    """The caller heard (part of) a ticket code: the code prompt's mark, or any bot audio after
    the confirmation prompt (where the only next prompt is the code) with nothing else since."""
    marks = result.marks_received
    if any(m.endswith("-ticket_code") for m in marks):
        return True
    if not isinstance(marks, MarkLog):
        return False
    after = marks.media_after_last("confirm_report")
    return bool(after) and not marks.labels_after_last("confirm_report")


# --- a small disk (tmpfs; needs root, skipped without) -------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write zeros until the disk is full; returns the filler file."""
    filler = directory / f"filler-{uuid.uuid4().hex[:6]}"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler
