"""Operators teaching the NLU: corrected intents (and places) on caller turns, the confusion
they reveal, and their export as Rasa 3.x training data.

The export follows the training data's own rules (tests/test_nlu_data.py) so the file can be
dropped into nlu_models/data/ as it is: NFC, lowercase, no punctuation, one space between
words, only the `location` entity, no example repeated in its intent, and nothing that is in
the held-out test set (that would inflate the evaluation figures).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from hotline.console.store import audit
from hotline.nlu.train import INTENTS
from hotline.store import now_iso

MAX_LOCATION = 200
# Characters that would break the Rasa example syntax ([span](entity)) or that the training
# data never contains (its examples are lowercase words without punctuation).
_STRIP = re.compile(r"[\[\]()\.,!?;:\"{}|`*]")
_SPACES = re.compile(r"\s+")

INTENT_LABELS: dict[str, str] = {
    "report_utilities": "Phản ánh điện, nước",
    "report_infrastructure": "Phản ánh đường sá, hạ tầng",
    "report_environment": "Phản ánh môi trường",
    "report_public_order": "Phản ánh trật tự công cộng",
    "report_disaster": "Phản ánh thiên tai",
    "report_administration": "Phản ánh thủ tục hành chính",
    "report_health": "Phản ánh y tế",
    "ask_public_service": "Hỏi thủ tục, dịch vụ công",
    "ask_ticket_status": "Hỏi kết quả phản ánh",
    "ask_hotline_info": "Hỏi về đường dây nóng",
    "greet": "Chào hỏi",
    "goodbye": "Chào tạm biệt",
    "affirm": "Đồng ý",
    "deny": "Không đồng ý",
    "request_human": "Xin gặp người trực",
    "repeat": "Xin nhắc lại",
    "emergency": "Khẩn cấp",
    "out_of_scope": "Ngoài phạm vi",
    "nlu_fallback": "Không nhận ra ý định",
    "nlu_down": "NLU không trả lời",
}


class CorrectionError(ValueError):
    """A refused correction; the message is Vietnamese."""


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text or "")


def training_text(text: str) -> str:
    """'Nhà tui, ở Triệu Phong!' -> 'nhà tui ở triệu phong' (the training data's form)."""
    text = _STRIP.sub(" ", nfc(text)).lower()
    return _SPACES.sub(" ", text).strip()


def annotate(text: str, location: str | None) -> str:
    """The example line: the text with the location marked as [span](location) when found."""
    plain = training_text(text)
    place = training_text(location or "")
    if not place:
        return plain
    at = f" {plain} ".find(f" {place} ")  # whole words only
    if at < 0:
        return plain
    return f"{plain[:at]}[{place}](location){plain[at + len(place) :]}"


def add_correction(
    db: sqlite_utils.Database,
    turn_id: int,
    corrected_intent: str,
    location: str | None,
    *,
    actor: str,
    ip: str | None = None,
) -> int:
    """Store an operator's correction of a caller turn; returns its id."""
    corrected_intent = (corrected_intent or "").strip()
    if corrected_intent not in INTENTS:
        raise CorrectionError(f"Ý định không hợp lệ: “{corrected_intent[:40]}”")
    location = _SPACES.sub(" ", nfc(location or "")).strip()
    if len(location) > MAX_LOCATION:
        raise CorrectionError(f"Địa điểm dài quá {MAX_LOCATION} ký tự")
    rows = list(
        db.query(
            "SELECT id, call_sid, speaker, kind, text, intent, intent_confidence FROM turns"
            " WHERE id = ?",
            [turn_id],
        )
    )
    if not rows:
        raise CorrectionError(f"Không có lượt nói số {turn_id}")
    turn = rows[0]
    if turn["speaker"] != "caller" or turn["kind"] not in (None, "speech"):
        raise CorrectionError("Chỉ sửa được nhãn cho lời nói của người gọi")
    text = nfc(turn["text"] or "").strip()
    if not training_text(text):
        raise CorrectionError("Lượt nói này không có chữ nào để dạy NLU")
    if location and annotate(text, location) == training_text(text):
        raise CorrectionError(
            "Địa điểm phải là một đoạn nguyên văn trong lời người gọi (chép đúng các từ)"
        )
    if corrected_intent == turn["intent"] and not location:
        raise CorrectionError("Nhãn không thay đổi: chọn ý định khác hoặc ghi địa điểm")
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO nlu_corrections (turn_id, call_sid, text, original_intent,"
            " original_confidence, corrected_intent, location, actor, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                turn_id,
                turn["call_sid"],
                text,
                turn["intent"],
                turn["intent_confidence"],
                corrected_intent,
                location or None,
                actor,
                now_iso(),
            ],
        )
        correction_id = int(cursor.lastrowid)  # type: ignore[arg-type]
        audit(
            db,
            actor,
            "nlu_correction",
            f"turn:{turn_id}",
            {"from": turn["intent"], "to": corrected_intent, "location": location or None},
            ip,
        )
    return correction_id


_LATEST = (
    "SELECT c.* FROM nlu_corrections c WHERE c.id = "
    "(SELECT MAX(c2.id) FROM nlu_corrections c2 WHERE c2.turn_id = c.turn_id)"
)


def latest_corrections(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """One row per corrected turn: the newest correction wins (an operator may fix a fix)."""
    return list(db.query(_LATEST + " ORDER BY c.id"))


def corrections_for_call(db: sqlite_utils.Database, call_sid: str) -> dict[int, dict[str, Any]]:
    rows = db.query(_LATEST + " AND c.call_sid = ? ORDER BY c.id", [call_sid])
    return {r["turn_id"]: r for r in rows}


def recent_corrections(db: sqlite_utils.Database, limit: int = 50) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM nlu_corrections ORDER BY id DESC LIMIT ?", [limit]))


def confusion(db: sqlite_utils.Database) -> list[tuple[str, str, int]]:
    """(original intent, corrected intent, count), most frequent first. Corrections that only
    added a place (same intent) are not confusions: see location_only()."""
    counts: Counter[tuple[str, str]] = Counter(
        (r["original_intent"] or "(không có)", r["corrected_intent"])
        for r in latest_corrections(db)
        if r["original_intent"] != r["corrected_intent"]
    )
    return [(a, b, n) for (a, b), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def location_only(db: sqlite_utils.Database) -> int:
    """Turns whose intent was right and whose place an operator marked."""
    return sum(1 for r in latest_corrections(db) if r["original_intent"] == r["corrected_intent"])


@dataclass
class ExportResult:
    yaml: str
    examples: int
    by_intent: dict[str, int] = field(default_factory=dict)
    skipped_known: int = 0  # already in the training data under the same intent
    skipped_test: int = 0  # in the held-out test set: kept out of training


def _known_examples(exclude: Path | None) -> tuple[set[tuple[str, str]], set[str]]:
    """(intent, folded text) pairs of the training data, and the folded test utterances."""
    from hotline.nlu.gen_lookups import plain, read_intents
    from hotline.nlu.train import DATA_DIR, TEST_DIR
    from hotline.text import fold

    def files(directory: Path, pattern: str) -> list[Path]:
        out = sorted(directory.glob(pattern)) if directory.is_dir() else []
        if exclude is not None:
            out = [p for p in out if p.resolve() != exclude.resolve()]
        return out

    train: set[tuple[str, str]] = set()
    for intent, examples in read_intents(files(DATA_DIR, "**/*.yml")).items():
        train.update((intent, fold(plain(e))) for e in examples)
    test = {fold(plain(e)) for exs in read_intents(files(TEST_DIR, "*.yml")).values() for e in exs}
    return train, test


def render_corrections(db: sqlite_utils.Database, *, exclude: Path | None = None) -> ExportResult:
    """The corrections as a Rasa 3.x NLU file (version "3.1")."""
    from hotline.nlu.gen_lookups import plain
    from hotline.text import fold

    try:
        train, test = _known_examples(exclude)
    except Exception:  # unreadable training data must not stop an export
        train, test = set(), set()
    by_intent: dict[str, list[str]] = {}
    result = ExportResult("", 0)
    for row in latest_corrections(db):
        intent = row["corrected_intent"]
        if intent not in INTENTS:
            continue
        example = annotate(row["text"] or "", row.get("location"))
        if not example:
            continue
        key = fold(plain(example))
        if (intent, key) in train:
            result.skipped_known += 1
            continue
        if key in test:
            result.skipped_test += 1
            continue
        seen = by_intent.setdefault(intent, [])
        if all(fold(plain(e)) != key for e in seen):
            seen.append(example)
    lines = [
        "# Corrections made by operators in the console (hotline nlu export-corrections).",
        f"# Exported {now_iso()}. Review, then keep this file in nlu_models/data/ and run",
        "# `hotline nlu train`.",
        'version: "3.1"',
        "nlu:",
    ]
    for intent in INTENTS:  # a stable order: diffs between exports stay small
        examples = by_intent.get(intent)
        if not examples:
            continue
        lines.append(f"- intent: {intent}")
        lines.append("  examples: |")
        lines.extend(f"    - {e}" for e in examples)
        result.by_intent[intent] = len(examples)
    if not result.by_intent:
        lines[-1] = "nlu: []"  # for the console's download; export_corrections writes no file
    result.examples = sum(result.by_intent.values())
    result.yaml = nfc("\n".join(lines) + "\n")
    return result


def export_corrections(db: sqlite_utils.Database, out_path: Path | str) -> int:
    """Write the corrections to `out_path` as Rasa YAML; returns the number of examples.

    Nothing is written when there is nothing to export (Rasa and the data checks expect a
    non-empty `nlu` list)."""
    out = Path(out_path)
    result = render_corrections(db, exclude=out)
    write_export(result, out)
    return result.examples


def write_export(result: ExportResult, out: Path) -> None:
    """Write to a temporary file and rename, so a training run never reads half a file."""
    if not result.examples:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(result.yaml, encoding="utf-8")
    os.replace(tmp, out)
