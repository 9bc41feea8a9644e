"""The viet-asr engine's streaming behaviour (not its words: espeak-ng Vietnamese is not
recognised correctly by any engine here, see PLATFORM.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from hotline.config import load_settings
from hotline.speech.recognizer import load_engine
from hotline.speech.vietasr_engine import VietAsrEngine, VietAsrStream
from tests.audio_fixtures import VI_LONG, VI_SHORT, frames, silence, speech, telephone, to_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine() -> VietAsrEngine:
    return VietAsrEngine()


def utterance(text: str) -> bytes:
    pcm = np.concatenate([silence(300), speech(text), silence(600)])
    return to_bytes(telephone(pcm))


def decode(stream: VietAsrStream, audio: bytes) -> str:
    for frame in frames(audio):
        stream.accept(frame)
    return stream.final().text


def test_load_engine_default_is_vietasr(tmp_path: Path) -> None:
    eng = load_engine(load_settings(asr="auto", data_dir=tmp_path))
    assert eng.name == "vietasr"
    assert load_engine(load_settings(asr="vietasr", data_dir=tmp_path)) is eng


def test_partials_appear_during_long_audio_then_a_final(engine: VietAsrEngine) -> None:
    stream = engine.new_stream(8000)
    audio = utterance(VI_LONG)
    seen: list[tuple[int, str]] = []
    chunks = frames(audio)
    for i, frame in enumerate(chunks):
        stream.accept(frame)
        if i % 10 == 0:
            seen.append((i, stream.partial()))
    assert len(chunks) * 0.02 > 10  # a long utterance: over ten seconds
    texts = [p for _, p in seen if p]
    assert texts, "no partial result during ten seconds of speech"
    # The first words show up early (not only at the end) and the hypothesis keeps growing.
    first = next(i for i, p in seen if p)
    assert first * 0.02 < 3.0
    assert len(set(texts)) >= 4
    assert len(texts[-1].split()) > len(texts[0].split())
    t = stream.final()
    assert t.text and len(t.text.split()) >= len(texts[-1].split()) - 2
    assert t.confidence is None  # viet-asr gives no confidences
    assert [w.word for w in t.words] == t.text.split()
    # final() reset the stream.
    assert stream.partial() == ""


def test_reset_makes_the_next_utterance_independent(engine: VietAsrEngine) -> None:
    short = utterance(VI_SHORT)
    fresh = decode(engine.new_stream(), short)
    assert fresh

    # After a final: the next utterance decodes exactly as in a fresh stream.
    stream = engine.new_stream()
    first = decode(stream, utterance(VI_LONG))
    assert first and first != fresh
    assert decode(stream, short) == fresh
    # Silence after a final gives nothing: no words carried over.
    assert decode(stream, to_bytes(silence(1500))) == ""

    # reset() in the middle of an utterance drops it.
    stream = engine.new_stream()
    for frame in frames(utterance(VI_LONG))[:300]:
        stream.accept(frame)
    assert stream.partial()
    stream.reset()
    assert stream.partial() == ""
    assert decode(stream, short) == fresh


def test_four_concurrent_streams_all_complete_without_cross_talk(engine: VietAsrEngine) -> None:
    texts = [VI_SHORT, VI_LONG, "Vâng, đúng rồi, cảm ơn anh.", "Đường bị ngập ở thôn Tân Định."]
    audios = [utterance(t) for t in texts]
    expected = [decode(engine.new_stream(), a) for a in audios]
    assert len(set(expected)) == 4

    results: dict[int, str] = {}
    partial_counts: dict[int, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def call(i: int) -> None:
        try:
            stream = engine.new_stream()
            start.wait()
            n = 0
            for frame in frames(audios[i]):
                stream.accept(frame)
                n += bool(stream.partial())
            partial_counts[i] = n
            results[i] = stream.final().text
            stream.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors
    assert all(not t.is_alive() for t in threads)
    # Each stream decoded its own audio exactly as it does alone.
    assert results == dict(enumerate(expected))
    assert all(partial_counts[i] > 0 for i in range(4))


def test_float_audio_is_not_silently_lost(engine: VietAsrEngine) -> None:
    # viet-asr turns float arrays into zeros; our stream only takes int16 bytes.
    stream = engine.new_stream()
    with pytest.raises(ValueError):
        stream.accept(b"\0\0\0")
    stream.close()
    with pytest.raises(RuntimeError):
        stream.partial()


# ----- no network --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import socket, sys
    from hotline.config import load_settings
    from hotline.speech.recognizer import load_engine
    from tests.audio_fixtures import VI_SHORT, frames, silence, speech, to_bytes
    import numpy as np

    engine = load_engine(load_settings(asr="vietasr", data_dir=sys.argv[1]))
    stream = engine.new_stream(8000)
    for f in frames(to_bytes(np.concatenate([silence(300), speech(VI_SHORT), silence(600)]))):
        stream.accept(f)
    text = stream.final().text
    print("TEXT:" + text, flush=True)
    if len(sys.argv) > 2 and sys.argv[2] == "control":
        # Positive control: prove the tracer would have seen a socket being opened.
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    """
)


def _run_child(prefix: list[str], tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [*prefix, sys.executable, str(script), str(tmp_path), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_recognition_opens_no_network_socket(tmp_path: Path) -> None:
    """strace every socket()/connect() of the process and its threads while it loads the
    model and decodes; the only inet socket must be the control opened afterwards."""
    trace = tmp_path / "trace.txt"
    proc = _run_child(
        ["strace", "-f", "-qq", "-e", "trace=socket,connect,sendto", "-o", str(trace)],
        tmp_path,
        "control",
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("ptrace not permitted here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TEXT:" in proc.stdout
    lines = trace.read_text().splitlines()
    inet = [ln for ln in lines if "AF_INET" in ln]
    # The control socket shows the tracer works...
    assert any("socket(AF_INET6, SOCK_DGRAM" in ln for ln in inet), lines
    # ...and it is the only network socket: nothing in viet-asr touched the network.
    assert len([ln for ln in inet if "socket(" in ln]) == 1, inet
    assert not [ln for ln in lines if "connect(" in ln and "AF_UNIX" not in ln], lines


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare not installed")
def test_recognition_works_without_any_network(tmp_path: Path) -> None:
    """In a network namespace with no interfaces up, loading and decoding still work."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -n not permitted here")
    proc = _run_child(["unshare", "-n"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = next(ln for ln in proc.stdout.splitlines() if ln.startswith("TEXT:"))[5:]
    assert text.strip()
