"""Train and evaluate the Rasa NLU model with the Rasa virtualenv (`.venv-rasa`, Python 3.10).

Rasa 3.6 cannot live in the app's Python 3.12 venv, so everything here runs `rasa` as a
subprocess. `train()` is a no-op while the newest model is newer than every training file, so
make, the test fixture and `hotline nlu train` can all call it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from hotline.config import REPO_ROOT, Settings, load_settings
from hotline.intents import INTENTS

NLU_DIR = REPO_ROOT / "nlu_models"
DATA_DIR = NLU_DIR / "data"
TEST_DIR = NLU_DIR / "test"
CONFIG_PATH = NLU_DIR / "config.yml"
KEEP_MODELS = 2  # older models are deleted after a successful training


class NLUSetupError(RuntimeError):
    """The Rasa venv or the trained model is missing; the message says which command fixes it."""


def rasa_env() -> dict[str, str]:
    """Environment for every rasa subprocess: no telemetry, quiet TensorFlow."""
    env = dict(os.environ)
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONWARNINGS="ignore",
        # Rasa's sanic and TF otherwise spread over every core; we share 2 with the app.
        SANIC_WORKERS="1",
    )
    # The app venv's variables must not leak into the 3.10 interpreter.
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def check_rasa(rasa_bin: Path) -> Path:
    if not rasa_bin.exists():
        raise NLUSetupError(
            f"Rasa is not installed: {rasa_bin} not found. Create the Rasa virtualenv with "
            "`make nlu` (python3.10 -m venv .venv-rasa && .venv-rasa/bin/pip install "
            "-c nlu_models/rasa-constraints.txt rasa==3.6.21)."
        )
    return rasa_bin


def data_files() -> list[Path]:
    """Everything a model is trained from: the data files and the pipeline config."""
    return sorted(DATA_DIR.rglob("*.yml")) + [CONFIG_PATH]


def latest_model(model_dir: Path) -> Path | None:
    models = sorted(model_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


def require_model(model_dir: Path) -> Path:
    model = latest_model(model_dir)
    if model is None:
        raise NLUSetupError(
            f"No trained NLU model in {model_dir}. Train one with `hotline nlu train` "
            "(or `make nlu`)."
        )
    return model


def model_is_current(model_dir: Path) -> bool:
    model = latest_model(model_dir)
    if model is None:
        return False
    newest_data = max(p.stat().st_mtime for p in data_files())
    return model.stat().st_mtime > newest_data


@dataclass(frozen=True)
class TrainResult:
    model: Path
    trained: bool  # False: the existing model was up to date
    seconds: float


@contextmanager
def _lock(model_dir: Path) -> Iterator[None]:
    # make, several pytest sessions and a developer can ask for a model at the same time; one
    # trains, the others wait and then find it current.
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".train.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train(
    settings: Settings | None = None,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
    quiet: bool = False,
) -> TrainResult:
    """`rasa train nlu` into settings.nlu_model_dir, unless the newest model is current."""
    settings = settings or load_settings()
    rasa = check_rasa(settings.rasa_bin)
    model_dir = settings.nlu_model_dir.resolve()
    with _lock(model_dir):
        if not force and model_is_current(model_dir):
            model = latest_model(model_dir)
            assert model is not None
            return TrainResult(model, trained=False, seconds=0.0)
        before = set(model_dir.glob("*.tar.gz"))
        cmd = [
            str(rasa),
            "train",
            "nlu",
            "--nlu",
            str(DATA_DIR),
            "--config",
            str(CONFIG_PATH),
            "--out",
            str(model_dir),
        ]
        echo(f"training NLU model: {' '.join(cmd)}")
        t0 = time.monotonic()
        # cwd = repo root: Rasa keeps its training cache in ./.rasa (gitignored).
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=rasa_env(),
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
        )
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            tail = (proc.stdout or "")[-3000:] if quiet else ""
            raise RuntimeError(f"rasa train nlu failed (exit {proc.returncode})\n{tail}")
        new = sorted(set(model_dir.glob("*.tar.gz")) - before, key=lambda p: p.stat().st_mtime)
        if not new:
            raise RuntimeError(f"rasa train nlu wrote no model into {model_dir}")
        model = new[-1]
        _prune(model_dir)
        return TrainResult(model, trained=True, seconds=seconds)


def _prune(model_dir: Path) -> None:
    models = sorted(model_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    for old in models[:-KEEP_MODELS]:
        old.unlink(missing_ok=True)


@dataclass(frozen=True)
class EvalResult:
    out_dir: Path
    accuracy: float
    macro_f1: float  # over the 18 intents (a wrong nlu_fallback counts as an error)
    weighted_f1: float
    per_intent: dict[str, dict[str, float]]
    n_examples: int
    confusion_png: Path | None
    # As deployed, the FallbackClassifier turns predictions under its threshold into
    # nlu_fallback; `rasa test` undoes that, so these two figures are computed here.
    fallback_threshold: float | None = None
    accuracy_with_fallback: float | None = None  # right intent AND above the threshold
    fallback_rate: float | None = None  # share of test utterances that would fall back
    entities: dict[str, dict[str, float]] | None = None  # DIET's entity report, per entity

    def summary(self) -> str:
        lines = [
            f"examples: {self.n_examples}",
            f"accuracy: {self.accuracy:.3f}",
            f"macro-F1: {self.macro_f1:.3f}",
            f"weighted-F1: {self.weighted_f1:.3f}",
            "",
            f"{'intent':24} {'prec':>6} {'recall':>6} {'F1':>6} {'n':>4}",
        ]
        for name, m in sorted(self.per_intent.items()):
            lines.append(
                f"{name:24} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1-score']:6.3f} "
                f"{int(m['support']):4d}"
            )
        if self.fallback_threshold is not None:
            lines.append("")
            lines.append(
                f"with nlu_fallback at {self.fallback_threshold:.2f}: accuracy "
                f"{self.accuracy_with_fallback:.3f}, fallback rate {self.fallback_rate:.3f}"
            )
        if self.entities:
            lines.append("")
            lines.append(f"{'entity (DIET)':24} {'prec':>6} {'recall':>6} {'F1':>6} {'n':>4}")
            for name, m in sorted(self.entities.items()):
                lines.append(
                    f"{name:24} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1-score']:6.3f} "
                    f"{int(m['support']):4d}"
                )
        lines.append("")
        lines.append(f"report: {self.out_dir}")
        if self.confusion_png:
            lines.append(f"confusion matrix: {self.confusion_png}")
        return "\n".join(lines)


def evaluate(
    settings: Settings | None = None,
    *,
    out_dir: Path | None = None,
    test_dir: Path = TEST_DIR,
    echo: Callable[[str], None] = print,
    quiet: bool = False,
) -> EvalResult:
    """`rasa test nlu` on the held-out set; figures from its intent report."""
    settings = settings or load_settings()
    rasa = check_rasa(settings.rasa_bin)
    model = require_model(settings.nlu_model_dir.resolve())
    out_dir = (out_dir or settings.data_dir / "nlu-eval").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(rasa),
        "test",
        "nlu",
        "--nlu",
        str(test_dir),
        "--model",
        str(model),
        "--out",
        str(out_dir),
        "--successes",
    ]
    echo(f"evaluating {model.name} on {test_dir}")
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env=rasa_env(),
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-3000:] if quiet else ""
        raise RuntimeError(f"rasa test nlu failed (exit {proc.returncode})\n{tail}")
    return read_report(out_dir)


def fallback_threshold(config: Path = CONFIG_PATH) -> float | None:
    """The FallbackClassifier threshold in the pipeline config."""
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    for comp in doc.get("pipeline") or []:
        if comp.get("name") == "FallbackClassifier":
            return float(comp.get("threshold", 0.3))
    return None


def read_report(out_dir: Path) -> EvalResult:
    report = json.loads((out_dir / "intent_report.json").read_text(encoding="utf-8"))
    per_intent = {k: v for k, v in report.items() if k in INTENTS}
    n = sum(int(v["support"]) for v in per_intent.values())
    # Rasa's own macro average also averages a row for nlu_fallback (support 0, F1 0) when the
    # fallback fired; the target is over the 18 real intents, with fallbacks counted as misses.
    macro = sum(v["f1-score"] for v in per_intent.values()) / max(len(per_intent), 1)
    weighted = sum(v["f1-score"] * v["support"] for v in per_intent.values()) / max(n, 1)
    png = out_dir / "intent_confusion_matrix.png"
    threshold = fallback_threshold()
    acc_fb = rate = None
    successes, errors = out_dir / "intent_successes.json", out_dir / "intent_errors.json"
    if threshold is not None and successes.exists() and errors.exists():
        ok = json.loads(successes.read_text(encoding="utf-8"))
        bad = json.loads(errors.read_text(encoding="utf-8"))
        total = len(ok) + len(bad)
        low = [p for p in ok + bad if p["intent_prediction"]["confidence"] < threshold]
        acc_fb = sum(p["intent_prediction"]["confidence"] >= threshold for p in ok) / max(total, 1)
        rate = len(low) / max(total, 1)
    entities = None
    diet = out_dir / "DIETClassifier_report.json"
    if diet.exists():
        rep = json.loads(diet.read_text(encoding="utf-8"))
        entities = {
            k: v for k, v in rep.items() if k in ("location", "ticket_code", "phone_number")
        }
    return EvalResult(
        entities=entities,
        fallback_threshold=threshold,
        accuracy_with_fallback=acc_fb,
        fallback_rate=rate,
        out_dir=out_dir,
        accuracy=float(report["accuracy"]),
        macro_f1=macro,
        weighted_f1=weighted,
        per_intent=per_intent,
        n_examples=n,
        confusion_png=png if png.exists() else None,
    )
