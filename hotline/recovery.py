"""What a crash or a full disk leaves behind, tidied at start and while serving.

- `check_data_dir`: before anything is opened, the data directory must take a write and an
  fsync, or start-up stops with one line naming HOTLINE_DATA_DIR.
- `recover_interrupted`: calls left `in-progress` by a process that died (kill -9, power cut)
  are marked `interrupted`; their WAV headers, which still say what was written when the file
  was opened, are fixed from the file size, and their stereo mix is built.
- `sweep_ringing`: signed voice webhooks whose stream never came leave `ringing` rows; after
  a few minutes they are closed (`no_stream`).
- `disk_check` / `db_check`: the writes /healthz relies on (a file with fsync, a SQLite commit).

Recording files are named as `hotline.recording.CallRecorder` names them, and mixed with
`hotline.audio.mix_stereo`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from hotline.audio import SAMPLE_RATE, mix_stereo, write_wav
from hotline.calls import add_event, upsert_call
from hotline.config import ConfigError, Settings
from hotline.store import Table, now_iso, register_schema

log = logging.getLogger(__name__)

# One row, rewritten by the readiness monitor: proves a commit reaches the disk.
HEALTH = Table("service_health", {"id": int, "at": str, "pid": int}, pk="id")
register_schema(HEALTH)

PROBE_NAME = ".write-probe"
PROBE_BYTES = 64 * 1024


def _probe_write(directory: Path, size: int = PROBE_BYTES) -> None:
    """Write, fsync and remove a file: raises OSError when the disk is full or read-only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PROBE_NAME}-{os.getpid()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def check_data_dir(settings: Settings) -> None:
    """Raise ConfigError (one line, naming HOTLINE_DATA_DIR) unless the data directory is usable."""
    data_dir = settings.data_dir
    try:
        _probe_write(data_dir)
        free = disk_free_mb(data_dir)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"HOTLINE_DATA_DIR={data_dir} is not writable ({reason}): free some space or point "
            "HOTLINE_DATA_DIR at a writable disk"
        ) from None
    if free < settings.min_free_mb:
        raise ConfigError(
            f"HOTLINE_DATA_DIR={data_dir} has {free:.0f} MB free, less than "
            f"HOTLINE_MIN_FREE_MB={settings.min_free_mb}: free some space or point "
            "HOTLINE_DATA_DIR at a larger disk"
        )


def disk_free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**20


def disk_check(settings: Settings) -> str | None:
    """None when the data directory takes a write; else what is wrong (for /healthz)."""
    try:
        _probe_write(settings.data_dir, 4096)
        free = disk_free_mb(settings.data_dir)
    except OSError as exc:
        return f"data directory not writable: {exc.strerror or exc}"
    if free < settings.min_free_mb:
        return f"{free:.0f} MB free in the data directory (minimum {settings.min_free_mb})"
    return None


def db_check(db: sqlite_utils.Database) -> None:
    """A real commit (raises sqlite3 errors when the database cannot be written)."""
    db.table("service_health").upsert({"id": 1, "at": now_iso(), "pid": os.getpid()}, pk="id")


# --- WAV repair -----------------------------------------------------------------------------


def repair_wav_header(path: Path) -> int | None:
    """Make the RIFF and data sizes match the file; returns the samples in it (None: not a WAV).

    Python's `wave` writes the header when the file is opened (0 frames) and fixes it only on
    close; a process killed mid-call leaves a header that says almost nothing is there."""
    try:
        with path.open("r+b") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            pos = 12
            block_align = 2
            while pos + 8 <= size:
                f.seek(pos)
                chunk_id, chunk_len = struct.unpack("<4sI", f.read(8))
                if chunk_id == b"fmt ":
                    fmt = f.read(min(chunk_len, 16))
                    if len(fmt) >= 14:
                        block_align = max(1, struct.unpack("<H", fmt[12:14])[0])
                if chunk_id == b"data":
                    data_len = size - pos - 8
                    data_len -= data_len % block_align  # a torn last frame is dropped
                    if data_len != chunk_len:
                        f.seek(pos + 4)
                        f.write(struct.pack("<I", data_len))
                        f.seek(4)
                        f.write(struct.pack("<I", pos + data_len))  # RIFF size: file - 8
                        f.truncate(pos + 8 + data_len)
                    return data_len // block_align
                pos += 8 + chunk_len + (chunk_len & 1)
    except OSError as exc:
        log.warning("could not repair %s: %s", path, exc)
        return None
    return None


def recording_paths(call: dict[str, Any], recordings_dir: Path) -> tuple[Path, Path, Path]:
    """Caller, bot and mixed WAV of a call, as CallRecorder names them."""
    sid = call["call_sid"]
    caller = Path(call.get("recording_path") or recordings_dir / f"{sid}.caller.wav")
    base = caller.parent
    bot = Path(call.get("bot_recording_path") or base / f"{sid}.bot.wav")
    mixed = Path(call.get("mixed_recording_path") or base / f"{sid}.wav")
    return caller, bot, mixed


@dataclass
class Recovered:
    interrupted: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # WAV files whose header was fixed
    mixed: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.interrupted)} interrupted call(s) closed, {len(self.repaired)} WAV "
            f"header(s) repaired, {len(self.mixed)} mix(es) built, {len(self.swept)} ringing "
            "call(s) swept"
        )


def _last_activity(db: sqlite_utils.Database, call_sid: str, fallback: str) -> str:
    row = db.execute(
        "SELECT MAX(at) FROM (SELECT MAX(at) AS at FROM events WHERE call_sid = ?"
        " UNION ALL SELECT MAX(created_at) FROM turns WHERE call_sid = ?)",
        [call_sid, call_sid],
    ).fetchone()
    return (row[0] if row and row[0] else None) or fallback


def recover_interrupted(db: sqlite_utils.Database, recordings_dir: Path) -> Recovered:
    """Close calls a dead process left `in-progress`. Run at start, before taking calls."""
    out = Recovered()
    calls = list(db.query("SELECT * FROM calls WHERE status = 'in-progress'"))
    for call in calls:
        sid = call["call_sid"]
        caller, bot, mixed = recording_paths(call, recordings_dir)
        samples = None
        for path in (caller, bot):
            if path.exists():
                before = path.stat().st_size
                if before < 44:
                    # Killed before the buffered header reached the disk: nothing was recorded.
                    write_wav(path, b"")
                n = repair_wav_header(path)
                if n is not None:
                    out.repaired.append(str(path))
                    if path == caller:
                        samples = n
                elif before:
                    log.warning("call %s: %s is not a WAV file", sid, path)
        if caller.exists():
            try:
                if bot.exists():
                    mix_stereo(caller, bot, mixed)
                else:
                    # The bot never spoke (or its track is gone): a mix with a silent right side.
                    write_wav(bot, b"")
                    mix_stereo(caller, bot, mixed)
                out.mixed.append(str(mixed))
            except Exception as exc:  # a damaged file must not stop the others
                log.warning("call %s: could not mix %s: %s", sid, caller, exc)
        ticket = call.get("ticket_code")
        draft = db.execute(
            "SELECT id FROM tickets WHERE call_sid = ? AND confirmed = 0 LIMIT 1", [sid]
        ).fetchone()
        fields: dict[str, Any] = {
            "status": "interrupted",
            "outcome": call.get("outcome") or ("ticket" if ticket else "interrupted"),
            "hangup_reason": call.get("hangup_reason") or "server_crash",
            "ended_at": call.get("ended_at") or _last_activity(db, sid, call["updated_at"]),
            "recording_path": str(caller) if caller.exists() else None,
            "bot_recording_path": str(bot) if bot.exists() else None,
            "mixed_recording_path": str(mixed) if mixed.exists() else None,
        }
        if samples is not None:
            fields["duration_s"] = round(samples / SAMPLE_RATE, 2)
        upsert_call(db, sid, **fields)
        detail: dict[str, Any] = {"audio_s": fields.get("duration_s")}
        if draft and not ticket:
            detail["draft_id"] = draft[0]
        add_event(db, sid, "interrupted", **detail)
        out.interrupted.append(sid)
    return out


def sweep_ringing(db: sqlite_utils.Database, older_than_s: float) -> list[str]:
    """Close `ringing` calls whose stream never opened within `older_than_s`."""
    cutoff = (
        (datetime.now(UTC) - timedelta(seconds=older_than_s))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    rows = db.execute(
        "SELECT call_sid FROM calls WHERE status = 'ringing' AND (stream_sid IS NULL OR"
        " stream_sid = '') AND COALESCE(updated_at, started_at) < ?",
        [cutoff],
    ).fetchall()
    swept = []
    for (sid,) in rows:
        upsert_call(
            db,
            sid,
            status="failed",
            outcome="no_stream",
            hangup_reason="no_stream",
            ended_at=now_iso(),
        )
        add_event(db, sid, "swept", after_s=older_than_s)
        swept.append(sid)
    return swept


def recover_at_start(db: sqlite_utils.Database, settings: Settings) -> Recovered:
    out = recover_interrupted(db, settings.recordings_dir)
    out.swept = sweep_ringing(db, settings.ringing_timeout_s)
    if out.interrupted or out.swept:
        log.warning("recovered after a crash: %s", out.summary())
    return out
