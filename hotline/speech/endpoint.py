"""End-of-turn model: Smart Turn v3.2, as bundled in the pipecat-ai wheel.

Asked after a short silence "has the caller finished, or paused mid-sentence?", from the
audio of the utterance alone (23 languages, Vietnamese among them; 8.7 MB ONNX, BSD-2).
pipecat-ai is installed without its dependencies (see the Makefile): its
`LocalSmartTurnAnalyzerV3` needs only onnxruntime, numpy, soxr and loguru. Its public
interface is an async frame processor for pipecat pipelines; the model call underneath,
`_predict_endpoint(float32 audio)`, is what a turn detector that keeps its own audio needs,
so this adapter is the one place that reaches for it.

One model per process serves every call (an onnxruntime session runs concurrently from
several threads); one inference takes 60-110 ms of one core on this machine, so it runs on
the decode scheduler with a final's priority, never on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

_MODEL: EndOfTurnModel | None = None
_LOCK = threading.Lock()


class EndOfTurnModel:
    name = "smart-turn-v3.2"

    def __init__(self, sample_rate: int = 8000) -> None:
        from loguru import logger

        # pipecat logs a banner and every load through loguru, to stderr: not our log's format.
        logger.disable("pipecat")
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

        t0 = time.monotonic()
        self.sample_rate = sample_rate
        self._analyzer = LocalSmartTurnAnalyzerV3(sample_rate=sample_rate, cpu_count=1)
        self.load_s = time.monotonic() - t0

    def complete_probability(self, pcm16: bytes) -> float:
        """P(the caller has finished) for the utterance so far, trailing silence included.
        The model reads the last 8 s; earlier audio is not needed."""
        keep = 8 * self.sample_rate * 2
        x = np.frombuffer(bytes(pcm16[-keep:]), dtype="<i2").astype(np.float32) / 32768.0
        if x.size == 0:
            return 1.0
        result = self._analyzer._predict_endpoint(x)
        return float(result["probability"])


def load_model() -> EndOfTurnModel:
    """The process's model, loaded on first use (~0.6 s)."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            _MODEL = EndOfTurnModel()
            log.info("end-of-turn model %s loaded in %.1f s", _MODEL.name, _MODEL.load_s)
        return _MODEL
