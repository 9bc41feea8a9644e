"""Turn-taking on live calls, over the real WebSocket: end of utterance, no-input, barge-in.

The caller audio has known speech and silence spans (espeak-ng speech between silences); the
server's stored turns and events are checked against them on the call's audio timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hotline.audio import pcm16_to_ulaw
from hotline.recordings import _espeak
from hotline.replay import Recording
from tests.servers import HotlineServer

# A caller number with a sidecar in recordings/ (its texts stand in for recognition).
CALLER = "+84905000001"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return _espeak("nhà tui mất điện từ sáng tới chừ", "vi-vn-x-south")


def recording(tmp_path: Path, speech: np.ndarray, turns: list[dict[str, Any]]) -> Recording:
    pad = np.zeros(8000, dtype=np.int16)
    audio = np.concatenate([pad, speech, pad])
    for t in turns:
        if t.get("speech"):
            t.update(at=1.0, end=1.0 + len(speech) / 8000)
    return Recording(
        tmp_path / "turns.wav", pcm16_to_ulaw(audio), {"caller": CALLER, "turns": turns}
    )


async def run(server: HotlineServer, rec: Recording) -> Any:
    return await server.replay(rec, timeout=120)


def rows(server: HotlineServer, sql: str, *params: Any) -> list[dict[str, Any]]:
    return list(server.db().query(sql, list(params)))


def first_voiced_ms(pcm: np.ndarray, threshold: int = 500) -> tuple[int, int]:
    voiced = np.nonzero(np.abs(pcm) > threshold)[0]
    return int(voiced[0] / 8), int(voiced[-1] / 8)


async def test_end_of_utterance_after_the_trailing_silence(
    plain_server: HotlineServer, tmp_path: Path, speech
) -> None:
    rec = recording(tmp_path, speech, [{"speech": True}, {"silence": 3}, {"hangup": True}])
    result = await run(plain_server, rec)
    turns = rows(
        plain_server, "SELECT * FROM turns WHERE call_sid = ? ORDER BY seq", result.call_sid
    )
    caller = [t for t in turns if t["speaker"] == "caller"]
    assert len(caller) == 1 and caller[0]["text"]  # one utterance, not cut in pieces
    # Where the speech is on the call's timeline: the caller spoke after the greeting's last
    # mark plus the client's pause; find it in the stored caller track.
    call = rows(plain_server, "SELECT * FROM calls WHERE call_sid = ?", result.call_sid)[0]
    from hotline.audio import read_wav

    track, _ = read_wav(call["recording_path"])
    on, off = first_voiced_ms(track)
    assert abs(caller[0]["start_ms"] - on) <= 250
    assert abs(caller[0]["end_ms"] - off) <= 250
    # The reply (NLU is down on this server: the caller is sent to a person) starts only after
    # the 600 ms of trailing silence that ends the utterance.
    reply = [t for t in turns if t["speaker"] == "bot" and t["seq"] > caller[0]["seq"]][0]
    assert reply["text"].startswith("Xin lỗi, hệ thống hiểu lời nói đang gặp sự cố")
    assert result.call["outcome"] == "transferred"  # degraded to a person, not dropped
    assert reply["start_ms"] >= off + 600 - 40
    assert reply["start_ms"] <= off + 600 + 1000


async def test_no_input_timeout_reprompts_after_the_prompt_has_played(
    plain_server: HotlineServer, tmp_path: Path, speech
) -> None:
    rec = recording(tmp_path, speech, [{"silence": 12}, {"hangup": True}])
    result = await run(plain_server, rec)
    turns = rows(
        plain_server,
        "SELECT * FROM turns WHERE call_sid = ? AND speaker = 'bot' ORDER BY seq",
        result.call_sid,
    )
    reprompt = next(t for t in turns if t["text"].startswith("Xin lỗi, tôi chưa nghe thấy"))
    greeting_end = max(t["end_ms"] for t in turns if t["seq"] < reprompt["seq"])
    # 7 s (HOTLINE_NO_INPUT_S) after the greeting finished playing, within the 200 ms of lead
    # the player keeps and the mark's round trip.
    assert 7000 - 100 <= reprompt["start_ms"] - greeting_end <= 7000 + 600


async def test_barge_in_clears_the_prompt_and_listens(
    plain_server: HotlineServer, tmp_path: Path, speech
) -> None:
    rec = recording(
        tmp_path,
        speech,
        [{"speech": True, "barge_in": True, "after": 1.0}, {"silence": 2}, {"hangup": True}],
    )
    result = await run(plain_server, rec)
    assert result.clears == 1
    # Twilio echoes the marks of the audio a clear drops; the stand-in did, the server coped.
    assert set(result.marks_received) <= set(result.marks_echoed)
    events = rows(
        plain_server,
        "SELECT * FROM events WHERE call_sid = ? AND kind = 'barge_in'",
        result.call_sid,
    )
    assert len(events) == 1
    turns = rows(
        plain_server, "SELECT * FROM turns WHERE call_sid = ? ORDER BY seq", result.call_sid
    )
    greeting = [t for t in turns if t["state"] == "greeting" and t["speaker"] == "bot"]
    assert greeting and all(t["interrupted"] == 1 for t in greeting)
    caller = [t for t in turns if t["speaker"] == "caller"]
    assert caller and caller[0]["state"] == "greeting"
    # The prompt was cut soon after the caller started talking.
    assert events[0]["call_ms"] - caller[0]["start_ms"] <= 400


async def test_a_non_interruptible_prompt_is_not_cut(
    plain_server: HotlineServer, tmp_path: Path, speech
) -> None:
    # Keypad report: 1, category 2, a recorded description ended with #, confirm with 1; then
    # talk over the ticket code, which must be heard whole.
    rec = recording(
        tmp_path,
        speech,
        [
            {"dtmf": "1"},
            {"dtmf": "2"},
            {"speech": True, "wait": False},
            {"dtmf": "#"},
            {"dtmf": "1", "wait": False},
        ],
    )
    rec.sidecar["turns"].append(
        {
            "speech": True,
            "barge_in": True,
            "after": 2.0,
            "at": rec.sidecar["turns"][2]["at"],
            "end": rec.sidecar["turns"][2]["end"],
        }
    )
    rec.sidecar["turns"].append({"hangup": True})
    result = await run(plain_server, rec)
    assert result.call["ticket_code"]
    code_turn = next(
        t for t in result.call["turns"] if t["speaker"] == "bot" and "Mã phản ánh" in t["text"]
    )
    assert code_turn["interrupted"] == 0
    assert result.clears == 0
