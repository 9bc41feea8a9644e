"""Telephone audio helpers, configuration, the protocol parser and log masking."""

from __future__ import annotations

import base64
import json
import logging
import warnings

import numpy as np
import pytest

from hotline import audio
from hotline.config import ConfigError, load_settings
from hotline.logs import MaskNumbers, mask_phone_numbers
from hotline.telephony import protocol

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference G.711 implementation, still in 3.12


def test_mulaw_encode_matches_the_reference_for_every_sample() -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    assert audio.pcm16_to_ulaw(pcm) == audioop.lin2ulaw(pcm, 2)


def test_mulaw_decode_matches_the_reference_for_every_code() -> None:
    codes = bytes(range(256))
    assert audio.ulaw_to_pcm16(codes) == audioop.ulaw2lin(codes, 2)


def test_resample_8k_to_16k_and_back_keeps_a_tone() -> None:
    t = np.arange(8000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    up = audio.resample(tone, 8000, 16000)
    assert len(up) == 16000 and up.dtype == np.int16
    back = audio.resample(up, 16000, 8000)
    assert np.corrcoef(back[100:-100], tone[100:-100])[0, 1] > 0.99


def test_frames_are_20ms_and_the_last_is_padded_with_silence() -> None:
    out = audio.frames(b"\x01" * 330)
    assert [len(f) for f in out] == [160, 160, 160]
    assert out[-1][10:] == bytes([audio.ULAW_SILENCE]) * 150


def test_protocol_parses_twilio_strings_as_numbers() -> None:
    msg = protocol.parse(
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": "3",
                "streamSid": "MZ1",
                "media": {
                    "track": "inbound",
                    "chunk": "2",
                    "timestamp": "40",
                    "payload": base64.b64encode(b"\xff" * 160).decode(),
                },
            }
        )
    )
    assert isinstance(msg, protocol.Media)
    assert (msg.sequence_number, msg.chunk, msg.timestamp_ms) == (3, 2, 40)
    assert msg.payload == b"\xff" * 160


@pytest.mark.parametrize(
    "raw",
    [
        "nope",
        "[]",
        '{"event": "media", "media": {"payload": "@@"}}',
        '{"event": "start"}',
        '{"event": "mark", "mark": {}}',
        '{"event": "unknown"}',
        '{"event": "media", "sequenceNumber": "x", "media": {"payload": ""}}',
    ],
)
def test_protocol_rejects_what_it_cannot_use(raw: str) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(raw)


def test_outbound_messages_are_what_twilio_accepts() -> None:
    assert json.loads(protocol.clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}
    assert json.loads(protocol.mark("MZ1", "p1")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "p1"},
    }
    media = json.loads(protocol.media("MZ1", b"\x00\xff"))
    assert base64.b64decode(media["media"]["payload"]) == b"\x00\xff"


def test_settings_defaults_work_without_configuration(tmp_path, monkeypatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith(("HOTLINE_", "TWILIO_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    s = load_settings(data_dir=tmp_path / "data")
    assert s.base_url == "http://127.0.0.1:8000"
    assert s.media_stream_url == "ws://127.0.0.1:8000/twilio/media"
    assert s.using_dev_token and len(s.auth_token) == 32
    assert s.auth_token == load_settings(data_dir=tmp_path / "data").auth_token  # stable


def test_public_url_gives_a_wss_stream_url(monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_PUBLIC_URL", "https://hotline.example.vn/")
    s = load_settings()
    assert s.media_stream_url == "wss://hotline.example.vn/twilio/media"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("HOTLINE_PUBLIC_URL", "hotline.example.vn", "HOTLINE_PUBLIC_URL"),
        ("HOTLINE_PUBLIC_URL", "https://x.vn/path?q=1", "no path, query"),
        ("HOTLINE_PORT", "99999", "HOTLINE_PORT"),
        ("HOTLINE_ASR", "whisper", "HOTLINE_ASR"),
    ],
)
def test_bad_settings_give_clear_messages(monkeypatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert message in str(err.value)


def test_vosk_without_a_model_names_the_setting(monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_ASR", "vosk")
    monkeypatch.delenv("HOTLINE_VOSK_MODEL", raising=False)
    with pytest.raises(ConfigError, match="HOTLINE_VOSK_MODEL"):
        load_settings()


def test_caller_numbers_are_masked_in_logs(caplog) -> None:
    assert mask_phone_numbers("call from +84905123456 ok") == "call from +84905***456 ok"
    assert (
        mask_phone_numbers("ticket 2827043, call CA0123456789abcdef")
        == "ticket 2827043, call CA0123456789abcdef"
    )
    logger = logging.getLogger("test.mask")
    logger.addFilter(MaskNumbers())
    with caplog.at_level(logging.INFO):
        logger.info("caller %s said hi", "0905123456")
    assert "0905123456" not in caplog.text and "0905***456" in caplog.text
