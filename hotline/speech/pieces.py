"""How one caller turn's transcript is put together from the recogniser's final passes.

Pure bookkeeping, no I/O: the call session launches the passes and feeds the recogniser; this
says what to feed and which passes make up the turn. A pass is an opaque handle (the session
uses the decode scheduler's futures), so it is tested with plain strings.

When the caller goes quiet (an end candidate), the session decodes what they said so far at
once, speculatively, and holds the audio that follows:
- the turn ends with nothing said since: that pass is the turn's transcript, ready early, and
  the held audio (trailing silence) is never decoded;
- the caller goes on: that pass becomes a *head* of the sentence, the held audio is fed first,
  and the turn's transcript is the heads followed by the final pass at its real end.
"""

from __future__ import annotations

from hotline.speech.turns import EndCandidate


class TurnPieces[H]:  # H: a final pass, as the session tracks it
    def __init__(self) -> None:
        self.used_for: EndCandidate | None = None  # the candidate whose pass ended a turn
        self.reset()

    def reset(self) -> None:
        """A new utterance starts: nothing decoded of it yet."""
        self.speculative: H | None = None
        self.held: bytearray | None = None
        self.held_for: EndCandidate | None = None
        self.heads: list[H] = []

    @property
    def holding(self) -> bool:
        """A speculative pass is out and the audio since is held."""
        return self.held is not None

    def speculate(self, candidate: EndCandidate, final: H) -> None:
        """`final` decodes what was said up to `candidate`; hold the audio from now on."""
        if self.holding:
            raise RuntimeError("a speculative pass is already out")
        self.speculative, self.held, self.held_for = final, bytearray(), candidate

    def audio(self, pcm: bytes, went_on: bool) -> bytes:
        """What to give the recogniser now. While a speculative pass is out, the audio is held
        unless the caller `went_on` (spoke again since its candidate): then the held audio and
        this both go, and the pass becomes a head."""
        if self.held is None:
            return pcm
        if went_on:
            return self.go_on() + pcm
        self.held += pcm
        return b""

    def go_on(self) -> bytes:
        """The caller went on: the speculative pass is a head; returns the held audio."""
        if self.speculative is not None:
            self.heads.append(self.speculative)
        held = bytes(self.held or b"")
        self.speculative, self.held, self.held_for = None, None, None
        return held

    def finish(self, speech_end_ms: int) -> tuple[H | None, bytes, list[H]]:
        """The turn ended with the caller's last voice at `speech_end_ms`.

        Returns (the speculative pass if nothing was said since its candidate, else None: then
        a final pass is needed, after the held audio returned second is fed), and the heads.
        Afterwards nothing is held."""
        cand = self.held_for  # set with the speculative pass, cleared with it
        if cand is not None and cand.speech_end_ms == speech_end_ms:
            final, held = self.speculative, b""
            self.used_for = cand
        else:
            final, held = None, self.go_on()  # nothing held: no audio, heads unchanged
        heads = self.heads
        self.reset()
        return final, held, heads
