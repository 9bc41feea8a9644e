"""A caller turn's transcript from final passes (hotline.speech.pieces): what the recogniser is
fed while a speculative pass is out, and which passes make up the turn. Passes are strings."""

from __future__ import annotations

import pytest

from hotline.speech.pieces import TurnPieces
from hotline.speech.turns import EndCandidate


def cand(speech_end_ms: int, at_ms: int | None = None) -> EndCandidate:
    return EndCandidate(
        at_ms=at_ms or speech_end_ms + 250, speech_end_ms=speech_end_ms, started_ms=0
    )


def test_audio_goes_straight_to_the_recogniser_until_the_caller_pauses() -> None:
    p: TurnPieces[str] = TurnPieces()
    assert not p.holding
    assert p.audio(b"abc", went_on=False) == b"abc"
    assert p.audio(b"def", went_on=True) == b"def"  # nothing to go on from


def test_a_turn_that_ends_at_the_pause_uses_the_speculative_pass_and_drops_the_silence() -> None:
    p: TurnPieces[str] = TurnPieces()
    c = cand(1000)
    p.speculate(c, "nhà tui mất điện")
    assert p.holding
    assert p.audio(b"\0" * 320, went_on=False) == b""  # trailing silence: held, not decoded
    final, held, heads = p.finish(speech_end_ms=1000)
    assert (final, held, heads) == ("nhà tui mất điện", b"", [])
    assert p.used_for is c and not p.holding


def test_going_on_makes_the_pass_a_head_and_feeds_the_held_audio_first() -> None:
    p: TurnPieces[str] = TurnPieces()
    p.speculate(cand(1000), "nhà tui mất điện")
    assert p.audio(b"s1", went_on=False) == b""
    assert p.audio(b"s2", went_on=False) == b""
    assert p.audio(b"v1", went_on=True) == b"s1s2v1"  # in order, nothing lost
    assert not p.holding and p.heads == ["nhà tui mất điện"]
    assert p.audio(b"v2", went_on=True) == b"v2"
    # The sentence ends later: a new final pass is needed, after the heads.
    final, held, heads = p.finish(speech_end_ms=2600)
    assert (final, held, heads) == (None, b"", ["nhà tui mất điện"])
    assert p.used_for is None and p.heads == []


def test_two_pauses_give_two_heads_in_order() -> None:
    p: TurnPieces[str] = TurnPieces()
    p.speculate(cand(1000), "cây đổ")
    p.audio(b"x", went_on=True)
    p.speculate(cand(2000), "chắn ngang đường")
    p.audio(b"y", went_on=True)
    p.speculate(cand(3000), "ở xã gio linh")
    final, _, heads = p.finish(speech_end_ms=3000)
    assert final == "ở xã gio linh" and heads == ["cây đổ", "chắn ngang đường"]


def test_a_turn_that_ends_after_more_speech_than_its_candidate_decodes_the_held_audio() -> None:
    # The caller spoke after the candidate but the end came before the audio showed it (the
    # pass then misses words): it becomes a head and the held audio is decoded after it.
    p: TurnPieces[str] = TurnPieces()
    p.speculate(cand(1000), "head")
    p.audio(b"held", went_on=False)
    final, held, heads = p.finish(speech_end_ms=1400)
    assert (final, held, heads) == (None, b"held", ["head"])


def test_a_new_utterance_forgets_the_last_ones_pieces_but_not_which_pass_ended_a_turn() -> None:
    p: TurnPieces[str] = TurnPieces()
    c = cand(1000)
    p.speculate(c, "a")
    p.finish(speech_end_ms=1000)
    p.speculate(cand(5000), "b")
    p.reset()
    assert not p.holding and p.heads == [] and p.speculative is None
    assert p.used_for is c  # a parse of that pass finishing late is still the turn's


def test_only_one_speculative_pass_at_a_time() -> None:
    p: TurnPieces[str] = TurnPieces()
    p.speculate(cand(1000), "a")
    with pytest.raises(RuntimeError):
        p.speculate(cand(1300), "b")
