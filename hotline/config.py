"""Settings, read from the environment (and an optional `.env`) with pydantic-settings.

Every setting has a default that works on a developer's machine, so `make run` needs no
configuration. `.env.example` documents each one; keep the two in step.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message names the variable and what to do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- service ---
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str = Field(
        "",
        description="https base URL Twilio reaches (for example an ngrok URL). Empty: http://HOST:PORT.",
    )
    data_dir: Path = Path("data")
    call_flows_dir: Path = REPO_ROOT / "call_flows"
    log_level: str = "INFO"

    # --- Twilio ---
    twilio_account_sid: str = Field(
        "", validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "HOTLINE_TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: str = Field(
        "", validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "HOTLINE_TWILIO_AUTH_TOKEN")
    )
    twilio_sms_from: str = Field(
        "", validation_alias=AliasChoices("TWILIO_SMS_FROM", "HOTLINE_TWILIO_SMS_FROM")
    )
    # Only tests point this elsewhere (at a loopback stand-in for Twilio's REST API).
    twilio_api_base: str = "https://api.twilio.com"
    verify_signatures: bool = True

    # --- speech ---
    asr: Literal["auto", "vosk", "vietasr", "sidecar"] = "auto"
    vosk_model: Path | None = None
    sidecar_dir: Path | None = None
    tts_voice: str = "vi-vn-x-central"
    tts_rate: int = Field(150, ge=60, le=400)
    tts_volume: float = Field(0.85, gt=0.0, le=1.0)
    end_silence_ms: int = Field(600, ge=100, le=5000)
    # End of turn: `silence` ends it after end_silence_ms of silence; `smart` asks the Smart
    # Turn model after turn_probe_ms and ends at once when it says the caller has finished,
    # else waits up to turn_max_silence_ms (callers who pause to think).
    turn: Literal["silence", "smart"] = "silence"
    turn_probe_ms: int = Field(250, ge=100, le=2000)
    turn_reprobe_ms: int = Field(300, ge=0, le=2000)  # ask again this often (0: once)
    turn_max_silence_ms: int = Field(1200, ge=200, le=5000)
    turn_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # A caller who starts again within this long of their last word (before our reply can be
    # an answer to them) is still in the same sentence: the two parts are understood as one.
    turn_resume_ms: int = Field(1500, ge=0, le=5000)
    # Threads that decode speech for all calls (0: one per core).
    decode_workers: int = Field(0, ge=0, le=64)
    max_utterance_s: float = Field(20.0, ge=2.0, le=120.0)
    no_input_s: float = Field(7.0, ge=1.0, le=60.0)
    vad_mode: int = Field(3, ge=0, le=3)

    # --- NLU (Rasa) ---
    nlu_url: str = "http://127.0.0.1:5005"
    nlu_token: str = ""
    nlu_manage: bool = True
    nlu_timeout_s: float = Field(1.5, gt=0.0, le=30.0)
    nlu_model_dir: Path = REPO_ROOT / "nlu_models" / "models"
    rasa_bin: Path = REPO_ROOT / ".venv-rasa" / "bin" / "rasa"

    # --- call handling ---
    operator_number: str = ""
    operator_hours: str = "mon-fri 07:30-17:00"
    emergency_transfer_number: str = ""
    timezone: str = "Asia/Ho_Chi_Minh"
    # Open311 GeoReport v2 (/open311/v2/): the jurisdiction_id clients may name.
    open311_jurisdiction: str = "quangtri.gov.vn"
    # Messages to residents (hotline/outbox.py): first retry after this, doubling, up to 1 h.
    outbox_retry_s: float = 30.0
    # Reports of one category in one commune/ward within this many hours are one incident.
    incident_window_h: float = 24.0

    # --- media streams: binding and limits (see README "Stream security and isolation") ---
    # How long the per-call stream credential in the TwiML stays valid (Twilio opens the stream
    # within a second or two of our answer).
    stream_token_ttl_s: float = Field(60.0, ge=5.0, le=600.0)
    # A stream that sends nothing at all (not even silence) for this long has lost its line.
    stream_idle_s: float = Field(15.0, ge=2.0, le=300.0)
    # The longest call; past it the caller is hung up on (hangup_reason max_duration).
    max_call_s: float = Field(1800.0, ge=5.0, le=4 * 3600.0)
    # Admission control (README "Admission control"): calls taken live at once; past it a call
    # hears the busy prompt and may leave a voice message (an overflow stream, much cheaper).
    max_calls: int = Field(8, ge=1, le=1000)  # bench/load.py, silence mode: p95 <= 500 ms up to 8
    # Overflow streams at once (unset: a quarter of HOTLINE_MAX_CALLS, at least 1; 0: none);
    # past it the caller hears a <Say> busy message and the call is hung up.
    max_overflow_calls: int | None = Field(None, ge=0, le=1000)
    # Per stream: largest WebSocket message, largest decoded media payload (Twilio sends 160
    # bytes), largest timestamp jump one message may fill with silence, messages per second
    # (a --fast replay sends about 1000), protocol errors before the stream is closed.
    stream_max_message_bytes: int = Field(8192, ge=1024, le=1024 * 1024)
    stream_max_payload_bytes: int = Field(320, ge=160, le=8000)
    stream_max_gap_ms: int = Field(2000, ge=20, le=60000)
    stream_max_messages_per_s: int = Field(2000, ge=60, le=100000)
    stream_max_errors: int = Field(50, ge=1, le=100000)

    # --- readiness and fault survival (issue 10b) ---
    # Shows /healthz details (Rasa PID, port, model, errors) to whoever sends it as a Bearer
    # token; console logins see them too. Empty: details only for console logins.
    health_token: str = ""
    # A call arriving while Rasa still loads is greeted and held this long, then takes the menu.
    start_hold_s: float = Field(45.0, ge=0.0, le=600.0)
    # A call that stays `ringing` with no media stream this long is closed as `no_stream`.
    ringing_timeout_s: float = Field(300.0, ge=10.0)
    # Below this much free space in HOTLINE_DATA_DIR, /healthz reports not ready (and start fails).
    min_free_mb: int = Field(20, ge=0)
    health_interval_s: float = Field(2.0, gt=0.0, le=60.0)

    # --- console ---
    secret_key: str = ""
    # Only for a console served over plain http on a developer's machine.
    cookie_secure: bool = False

    # --- privacy: retention (hotline/privacy.py applies them daily and on `hotline privacy purge`) ---
    # Counted from the call; audio and transcripts of a call with an open ticket are kept until
    # the ticket closes, and then as long again from its closing.
    retain_audio_days: int = Field(90, ge=1, le=3650)
    retain_transcripts_days: int = Field(365, ge=1, le=3650)
    pseudonymise_numbers_days: int = Field(180, ge=1, le=3650)
    # Counted from the ticket's closing (đã xử lý / từ chối): caller, words, place as said go.
    retain_closed_ticket_personal_days: int = Field(365, ge=1, le=3650)
    # Local time (HOTLINE_TIMEZONE) at which `hotline serve` runs the daily purge.
    purge_time: str = Field("02:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "HOTLINE_PUBLIC_URL must be an http(s) base URL such as https://hotline.example.vn"
            )
        if parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError(
                "HOTLINE_PUBLIC_URL must be a bare base URL: no path, query or fragment "
                "(Twilio drops query strings from stream URLs)"
            )
        return v

    @model_validator(mode="after")
    def _check_vosk(self) -> Settings:
        if self.asr == "vosk" and self.vosk_model is None:
            raise ValueError("HOTLINE_ASR=vosk needs HOTLINE_VOSK_MODEL (a Vosk model directory)")
        if self.asr == "sidecar" and self.sidecar_dir is None:
            raise ValueError(
                "HOTLINE_ASR=sidecar needs HOTLINE_SIDECAR_DIR (recorded-call sidecars)"
            )
        return self

    # --- derived values ---
    @property
    def base_url(self) -> str:
        """The URL Twilio signs requests against."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def media_stream_url(self) -> str:
        """The stream URL written into TwiML and signed on the WebSocket handshake."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}/twilio/media"

    @property
    def secure_cookies(self) -> bool:
        """Console cookies carry `Secure` when the public URL is https (or when forced)."""
        return self.cookie_secure or self.base_url.startswith("https://")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hotline.db"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def tts_cache_dir(self) -> Path:
        return self.data_dir / "tts-cache"

    @cached_property
    def auth_token(self) -> str:
        """Twilio's auth token, or a per-machine development token kept in the data directory.

        Signature checks stay on without configuration: `hotline replay` on the same machine
        reads the same file, and real Twilio requests are refused until the real token is set.
        """
        if self.twilio_auth_token:
            return self.twilio_auth_token
        return _local_secret(self.data_dir / "dev-twilio-auth-token")

    @cached_property
    def nlu_auth_token(self) -> str:
        return self.nlu_token or _local_secret(self.data_dir / "nlu-auth-token")

    @cached_property
    def session_secret(self) -> str:
        return self.secret_key or _local_secret(self.data_dir / "console-secret-key")

    @property
    def using_dev_token(self) -> bool:
        return not self.twilio_auth_token


def _local_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_hex(16)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(token)
    tmp.chmod(0o600)
    try:
        # link() fails if another process won the race; then theirs is used.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise ConfigError with a readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            var = loc if loc.isupper() else f"HOTLINE_{loc.upper()}"
            lines.append(f"  {var}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
