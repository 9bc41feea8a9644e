"""The call page's transcript as the caller heard it: what was played, in time order.

Bot prompts are stored when they are queued, stamped with when they should start. A prompt cut
by barge-in stopped part-way; prompts queued behind it were cleared before a sound of them was
played; prompts queued as the caller hung up never played. This module decides, from the
stored turns, the barge-in events and the call's length, what to show.
"""

from __future__ import annotations

from typing import Any

SEEK_LEAD_MS = 300  # seek a little before speech starts, so short answers are not clipped


def _barge_times(call: dict[str, Any]) -> list[int]:
    return sorted(
        int(e["call_ms"])
        for e in call.get("events") or []
        if e.get("kind") == "barge_in" and e.get("call_ms") is not None
    )


def seconds_text(ms: int) -> str:
    """3200 -> '3,2 s' (Vietnamese decimal comma)."""
    return f"{ms / 1000:.1f}".replace(".", ",") + " s"


def played_turns(call: dict[str, Any]) -> list[dict[str, Any]]:
    barges = _barge_times(call)
    length_ms = int((call.get("duration_s") or 0) * 1000) or None
    out: list[dict[str, Any]] = []
    for t in call.get("turns") or []:
        t = dict(t)
        start = int(t.get("start_ms") or 0)
        t["seek_ms"] = max(0, start - SEEK_LEAD_MS) if t.get("speaker") == "caller" else start
        t["cut_text"] = ""
        if t.get("speaker") == "bot":
            if length_ms is not None and start >= length_ms:
                continue  # queued as the call ended: never played
            if t.get("interrupted"):
                cut = next((b for b in barges if b >= start), None)
                if (cut is None or cut - start < 1) and any(b <= start for b in barges):
                    # Cleared before it started (queued behind the prompt that was cut).
                    continue
                end = t.get("end_ms")
                if cut is not None and cut - start >= 1:
                    if end is not None and cut >= int(end):
                        # The barge-in came after this prompt had finished playing.
                        t["interrupted"] = 0
                    else:
                        t["cut_ms"] = cut - start
                        t["cut_text"] = "ngắt ở " + seconds_text(cut - start)
        out.append(t)
    out.sort(key=lambda t: (int(t.get("start_ms") or 0), t.get("seq") or 0))
    return out
