"""The call page's transcript matches the audio: calls replayed over the real WebSocket (the
Twilio stand-in), then read back the way the console shows them (hotline.console.transcript).

- A greeting cut by barge-in shows where it was cut ("ngắt ở 1,2 s"); prompts queued behind it
  were never played and are not shown; turns are in time order; seek points sit a little
  before the caller's speech.
- Speech over a prompt that may not be cut (the ticket code) is kept as the caller's turn and
  answered after the prompt, instead of being dropped (and the bot then saying it heard nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hotline.audio import pcm16_to_ulaw
from hotline.calls import get_call
from hotline.console.transcript import SEEK_LEAD_MS, played_turns
from hotline.recordings import _espeak
from hotline.replay import Recording
from hotline.speech.sidecar import load_sidecars
from tests.servers import ROOT, HotlineServer

CALLER = "+84905000001"  # has a sidecar in recordings/: its texts stand in for recognition


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
        tmp_path / "call.wav", pcm16_to_ulaw(audio), {"caller": CALLER, "turns": turns}
    )


def shown(server: HotlineServer, call_sid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    db = server.db()
    try:
        call = get_call(db, call_sid)
    finally:
        db.conn.close()
    assert call is not None
    return call, played_turns(call)


async def test_barge_in_shows_where_the_prompt_was_cut(
    plain_server: HotlineServer, tmp_path: Path, speech: np.ndarray
) -> None:
    rec = recording(
        tmp_path,
        speech,
        [{"speech": True, "barge_in": True, "after": 1.2}, {"silence": 2}, {"hangup": True}],
    )
    result = await plain_server.replay(rec, timeout=120)
    assert result.clears == 1
    call, turns = shown(plain_server, result.call_sid)
    barge = next(e for e in call["events"] if e["kind"] == "barge_in")
    stored_bot = [t for t in call["turns"] if t["speaker"] == "bot"]
    cut = [t for t in turns if t.get("cut_text")]
    assert len(cut) == 1
    (c,) = cut
    # Cut where the barge-in happened, relative to when the prompt really started playing.
    assert c["cut_ms"] == barge["call_ms"] - c["start_ms"]
    assert 0 < c["cut_ms"] < c["end_ms"] - c["start_ms"], c
    assert c["cut_text"] == "ngắt ở " + f"{c['cut_ms'] / 1000:.1f}".replace(".", ",") + " s"
    # Prompts that had finished before the barge-in are not called cut.
    done = [t for t in turns if t["speaker"] == "bot" and t["end_ms"] <= barge["call_ms"]]
    assert not any(t["cut_text"] or t["interrupted"] for t in done)
    # Prompts queued behind the cut one never played: stored, but not shown.
    never = [t for t in stored_bot if t["interrupted"] and t["start_ms"] >= barge["call_ms"]]
    shown_ids = {t["id"] for t in turns}
    assert all(t["id"] not in shown_ids for t in never)
    # Where the barge-in fell depends on load; either way something was checked above.
    assert done or never
    # Nothing is shown past the end of the recording, and the order is the audio's.
    starts = [t["start_ms"] for t in turns]
    assert starts == sorted(starts)
    assert max(starts) < call["duration_s"] * 1000
    caller = [t for t in turns if t["speaker"] == "caller"]
    assert caller and all(t["seek_ms"] == max(0, t["start_ms"] - SEEK_LEAD_MS) for t in caller)
    # The caller's speech started before the cut, as heard.
    assert caller[0]["start_ms"] <= barge["call_ms"]


async def test_speech_over_the_ticket_code_is_kept_and_answered(
    plain_server: HotlineServer, tmp_path: Path, speech: np.ndarray
) -> None:
    # Keypad report: 1, category 2, a recorded description ended with #, confirm with 1; then
    # the caller talks over the ticket code, which may not be cut.
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
    rec.sidecar["turns"].append({"silence": 4})
    rec.sidecar["turns"].append({"hangup": True})
    result = await plain_server.replay(rec, timeout=120)
    assert result.call["ticket_code"]
    assert result.clears == 0  # the code was heard whole
    call, turns = shown(plain_server, result.call_sid)
    code_turn = next(t for t in turns if t["speaker"] == "bot" and "Mã phản ánh" in t["text"])
    assert not code_turn["interrupted"] and not code_turn["cut_text"]
    code_end = code_turn["end_ms"]
    # What the caller said over the code is a turn of theirs, recognised (the sidecar's second
    # text: the first was the recorded description).
    texts = load_sidecars(ROOT / "recordings")[CALLER]
    over = [
        t
        for t in turns
        if t["speaker"] == "caller"
        and t["kind"] == "speech"
        and code_turn["start_ms"] <= t["start_ms"] < code_end
    ]
    assert len(over) == 1, [(t["speaker"], t["start_ms"], t["text"]) for t in turns]
    assert over[0]["text"] == texts[1]
    assert any(e["kind"] == "speech_over_prompt" for e in call["events"])
    # It was answered after the code had been read, not met with "I did not hear you".
    after = [t for t in turns if t["speaker"] == "bot" and t["start_ms"] >= code_end - 100]
    assert after, "the bot said nothing after the code"
    for key in ("didnt_hear", "goodbye_silence"):
        heard_nothing = call_flow_prompt(key)
        assert all(heard_nothing not in t["text"] for t in after), key
    starts = [t["start_ms"] for t in turns]
    assert starts == sorted(starts)


def call_flow_prompt(key: str) -> str:
    """A prompt's text from call_flows/main.yml (what the bot says when it hears nothing)."""
    import yaml

    flow = yaml.safe_load((ROOT / "call_flows" / "main.yml").read_text(encoding="utf-8"))
    prompts = flow.get("prompts", {})
    text = prompts.get(key) or ""
    return " ".join(str(text).split())[:40] or "\x00never"
