"""The NLU training and test data: NFC, intents, sizes, held-out honesty, generated files."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml

from hotline.config import REPO_ROOT
from hotline.nlu import gen_lookups
from hotline.nlu.gazetteer import normalize_location
from hotline.nlu.gen_lookups import plain, read_intents
from hotline.nlu.train import DATA_DIR, INTENTS, TEST_DIR
from hotline.text import digits_from_speech, fold, strip_diacritics

NLU_DIR = REPO_ROOT / "nlu_models"
ENTITY = re.compile(r"\[([^\]]+)\]\(([a-z_]+)\)")


def _text_files() -> list[Path]:
    files = [p for p in NLU_DIR.rglob("*") if p.suffix in (".yml", ".yaml", ".txt")]
    return [p for p in files if "models" not in p.relative_to(NLU_DIR).parts]


def _train() -> dict[str, list[str]]:
    return read_intents(sorted(DATA_DIR.rglob("*.yml")))


def _test() -> dict[str, list[str]]:
    return read_intents(sorted(TEST_DIR.glob("*.yml")))


def test_all_nlu_files_are_nfc() -> None:
    files = _text_files()
    assert len(files) >= 10
    bad = [
        str(p.relative_to(REPO_ROOT))
        for p in files
        if not unicodedata.is_normalized("NFC", p.read_text(encoding="utf-8"))
    ]
    assert not bad, f"not NFC: {bad}"


def test_yaml_files_parse_as_rasa_nlu() -> None:
    for path in sorted(DATA_DIR.rglob("*.yml")) + sorted(TEST_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["version"] == "3.1", path
        assert isinstance(doc["nlu"], list) and doc["nlu"], path


def test_exactly_the_intents_and_enough_examples() -> None:
    train = _train()
    assert set(train) == set(INTENTS)
    for intent, examples in train.items():
        minimum = 60 if intent.startswith("report_") else 40
        assert len(examples) >= minimum, (intent, len(examples))
        assert len(set(examples)) == len(examples), f"duplicates in {intent}"


def test_data_is_lowercase_without_punctuation() -> None:
    for intent, examples in _train().items():
        for ex in examples:
            text = plain(ex)
            assert text == text.lower(), (intent, ex)
            assert not re.search(r"[.,!?;:\"]", text), (intent, ex)


def test_every_intent_has_unaccented_examples() -> None:
    for intent, examples in _train().items():
        bare = [e for e in examples if plain(e) == strip_diacritics(plain(e))]
        assert len(bare) >= 0.2 * len(examples), (intent, len(bare), len(examples))


def test_dialect_words_are_in_the_data() -> None:
    words = {w for exs in _train().values() for e in exs for w in plain(e).split()}
    for dialect in (
        "tui",
        "mi",
        "răng",
        "rứa",
        "chừ",
        "ni",
        "tê",
        "mô",
        "chi",
        "hỉ",
        "o",
        "eng",
        "mạ",
        "bọ",
    ):
        assert dialect in words, dialect


def test_held_out_set_is_not_in_training_data() -> None:
    """Honesty of the eval figures: no test utterance equals a training one, even unaccented."""
    train_keys = {fold(plain(e)) for exs in _train().values() for e in exs}
    test = _test()
    assert set(test) == set(INTENTS)
    for intent, examples in test.items():
        assert len(examples) >= 10, intent
        leaked = [e for e in examples if fold(plain(e)) in train_keys]
        assert not leaked, (intent, leaked)


def test_annotated_entities_are_usable() -> None:
    for exs in list(_train().values()) + list(_test().values()):
        for ex in exs:
            for span, entity in ENTITY.findall(ex):
                assert entity in ("location", "ticket_code", "phone_number"), ex
                if entity == "ticket_code":
                    assert len(digits_from_speech(span)) >= 6, ex
                elif entity == "phone_number":
                    assert len(digits_from_speech(span)) in (10, 11), ex
                elif re.search(r"\b(xã|phường|huyện|thị trấn|xa|phuong|huyen)\b", span):
                    # A unit word means a real unit: the gazetteer must know it.
                    assert normalize_location(span).matched, ex


def test_generated_files_are_current() -> None:
    assert gen_lookups.main(["--check"]) == 0, "run: .venv/bin/python -m hotline.nlu.gen_lookups"


def test_lookup_table_covers_the_gazetteer() -> None:
    text = (DATA_DIR / "generated" / "lookup_location.yml").read_text(encoding="utf-8")
    entries = {ln[6:] for ln in text.splitlines() if ln.startswith("    - ")}
    for name in (
        "huyện hướng hóa",
        "huyen huong hoa",
        "đakrông",
        "xã đakrông",
        "phường nam đông hà",
        "thị trấn khe sanh",
        "tt khe sanh",
        "phường một",
        "đặc khu cồn cỏ",
        "xã ba lòng",
        "đường lê duẩn",
    ):
        assert name in entries, name
    # Single-syllable commune names are ordinary words: only with their unit word.
    assert "xã thuận" in entries and "thuận" not in entries


@pytest.mark.parametrize("pin", ["rasa==3.6.21", "tensorflow==2.12.0", "numpy==1.23.5"])
def test_constraints_pin_rasa(pin: str) -> None:
    lines = (NLU_DIR / "rasa-constraints.txt").read_text().splitlines()
    assert pin in lines
