# Quảng Trị AI hotline. `make run` and `make test` do all set-up from a fresh clone:
# Debian packages (when missing), the app's virtualenv (.venv, Python 3.12), Rasa's virtualenv
# (.venv-rasa, Python 3.10) and the trained NLU model. Every step is skipped when up to date.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY312 ?= $(firstword $(wildcard /root/.pyenv/versions/3.12.*/bin/python3) $(shell command -v python3.12))
PY310 ?= $(firstword $(wildcard /root/.pyenv/versions/3.10.*/bin/python3) $(shell command -v python3.10))
APT_PACKAGES := espeak-ng libespeak-ng1 sox chromium strace util-linux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := .make
VOSK_MODEL_URL ?= https://alphacephei.com/vosk/models/vosk-model-small-vn-0.4.zip

.PHONY: help setup run test lint bench models nlu apt clean screenshots

help:
	@echo "make run     serve the hotline on http://127.0.0.1:8000 (sets everything up first)"
	@echo "make test    run the test suite (sets everything up first)"
	@echo "make lint    ruff"
	@echo "make bench   speech, NLU, end-to-end call and load benchmarks (figures for the README)"
	@echo "make screenshots  retake the console screenshots linked from the README"
	@echo "make models  fetch the Vietnamese Vosk model (needs internet access to alphacephei.com)"
	@echo "make nlu     train the Rasa NLU model if its data changed"

setup: $(STAMP)/apt .venv/.installed .venv-rasa/.installed nlu

$(STAMP)/apt: Makefile
	@mkdir -p $(STAMP)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@touch $@

.venv/.installed: pyproject.toml
	@test -x "$(PY312)" || { echo "Python 3.12 not found: set PY312=/path/to/python3.12"; exit 1; }
	@test -x .venv/bin/python || "$(PY312)" -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[test]'
	# Smart Turn v3.2 ships inside the pipecat-ai wheel. Its local analyzer needs only
	# onnxruntime, numpy, soxr and loguru (in pyproject.toml); the wheel's own dependencies
	# (openai, numba/llvmlite, Pillow, aiohttp: ~300 MB) serve the rest of pipecat, not us.
	.venv/bin/pip install -q --no-deps pipecat-ai==1.14.0
	@touch $@

# Rasa 3.6 supports Python 3.8-3.10 only, and its pins clash with the app's: its own venv,
# installed from a committed constraints file so every install resolves the same.
.venv-rasa/.installed: nlu_models/rasa-constraints.txt
	@test -x "$(PY310)" || { echo "Python 3.10 not found (Rasa needs <3.11): set PY310=/path/to/python3.10"; exit 1; }
	@test -x .venv-rasa/bin/python || "$(PY310)" -m venv .venv-rasa
	.venv-rasa/bin/pip install -q --upgrade 'pip<25'
	.venv-rasa/bin/pip install -q -c nlu_models/rasa-constraints.txt rasa==3.6.21
	@touch $@

# `hotline nlu train` trains only when the model is missing or older than its data.
nlu: .venv/.installed .venv-rasa/.installed
	@.venv/bin/hotline nlu train

run: setup
	.venv/bin/hotline serve

# Two workers, whole files each: most tests wait on real time (calls replayed at the speed of
# speech, Rasa starting), so two run side by side in about half the time on two cores.
test: setup
	.venv/bin/pytest -q -n 2 --dist loadfile

lint: .venv/.installed
	.venv/bin/ruff check hotline tests bench
	.venv/bin/ruff format --check hotline tests bench

bench: setup
	.venv/bin/python bench/speech.py
	.venv/bin/python bench/nlu.py
	.venv/bin/python bench/calls.py
	.venv/bin/python bench/turns.py
	# The two end-of-turn modes side by side: the ramp and the synchronized worst case.
	.venv/bin/python bench/load.py --turn smart --steps 4,8,12,16,24 --step-seconds 40 --sync 16 --repeat 3
	.venv/bin/python bench/load.py --turn silence --steps 4,8,12,16 --step-seconds 40 --sync 16 --repeat 3

screenshots: setup
	.venv/bin/python bench/screenshots.py

models: .venv/.installed
	@umask 077; mkdir -p data/models
	@if [ -d data/models/vosk-model-small-vn-0.4 ]; then echo "data/models/vosk-model-small-vn-0.4 is there"; \
	else curl -fSL --max-time 300 -o data/models/vosk-vn.zip "$(VOSK_MODEL_URL)" \
		&& (cd data/models && unzip -q vosk-vn.zip && rm vosk-vn.zip) \
		|| { echo "Could not download $(VOSK_MODEL_URL). This machine cannot reach alphacephei.com:"; \
		     echo "copy vosk-model-small-vn-0.4 (or vosk-model-vn-0.4) into data/models/ by hand."; \
		     echo "The default recognizer (viet-asr) needs no download."; exit 1; }; fi
	@echo "Use it with: HOTLINE_ASR=vosk HOTLINE_VOSK_MODEL=data/models/vosk-model-small-vn-0.4"

clean:
	rm -rf $(STAMP) .venv .venv-rasa nlu_models/models .rasa .pytest_cache .ruff_cache
