# One-command set-up. `make test` and `make demo` create .venv if missing and
# install the project into it; `make setup` does only that (fast when done).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   := ../shared/data

.PHONY: setup toolchain browser ray test test-fast demo bench bench-fit pretrain clean help

help:
	@echo "make setup   create .venv and install talking-avatar into it"
	@echo "make test    set up, then run the whole test suite (what CI runs)"
	@echo "make demo    set up, then fit, render and evaluate an avatar of a synthetic sample (about 10 minutes)"
	@echo "make demo VIDEO=me.mp4   the same on your own video, with the default preset"
	@echo "make bench   set up, run every benchmark and rewrite the table in docs/benchmarks.md (about 75 minutes the first time)"
	@echo "make bench-fit  set up, then the whole fit of cnn2 (about 46 minutes)"
	@echo "make ray     install Ray for avatar batch (make test does)"
	@echo "make pretrain   rebuild the shipped multispeaker motion prior from ../shared/data/multispeaker"

setup: $(STAMP)

# The CPU kernels are compiled on first use: they need a C++ compiler and the
# headers of this Python. Installed here when missing (as root with apt-get, as
# on a fresh Debian machine or CI); otherwise the message says what to install.
toolchain:
	@if command -v $${CXX:-c++} >/dev/null 2>&1 && $(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing a C++ compiler and Python headers (g++, python3-dev) with apt-get ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ python3-dev >/dev/null; \
	else \
	  echo "error: the CPU kernels need a C++ compiler (g++ 12+) and the Python 3.11 headers."; \
	  echo "       Debian/Ubuntu: sudo apt-get install g++ python3.11-dev   macOS: xcode-select --install"; \
	  exit 1; \
	fi

# The viewer's browser tests drive Debian's Chromium with Playwright (never a downloaded
# browser). Installed here as root with apt-get; otherwise those tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Chromium for the viewer's browser tests (apt-get install chromium) ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	    || echo "warning: Chromium could not be installed: the viewer's browser tests will skip"; \
	else \
	  echo "note: no Chromium (sudo apt-get install chromium): the viewer's browser tests will skip"; \
	fi

# Ray, for `avatar batch` (optional: without it, batches run on a process pool and the Ray tests skip).
ray: setup
	@$(BIN)/python -c "import ray" 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[batch]" \
	  || echo "warning: Ray could not be installed: avatar batch will use a process pool and its Ray tests skip"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "talking-avatar needs Python 3.11, found " + sys.version.split()[0]' \
	  || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	@$(MAKE) --no-print-directory toolchain
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@$(BIN)/python -c "import avatar, preprocess, cuda_ext, torch, mediapipe, cv2" \
	  && echo "installed: $$($(BIN)/avatar --version)"
	@touch $(STAMP)

# Chromium only for the tests (the demo and the product do not need it).
# --durations: the suite's budget is 20 min on 2 cores; CI's log names what costs the time.
test: setup browser ray
	$(BIN)/python -m pytest -q --durations=25

test-fast: setup browser ray
	$(BIN)/python -m pytest -q -m "not slow"

# Writes demo_out/ (sample.mp4, subject/, talk.mp4, eval.mp4, eval.json); again reuses what is done.
demo: setup
	$(BIN)/python -m avatar.demo $(if $(VIDEO),--video "$(VIDEO)")

# Every benchmark (those on ../shared/data skip with the reason when it is absent; the first run
# fits cnn2 with the default preset, about 46 minutes, kept in build/bench/ for the next), then
# the summary table of docs/benchmarks.md written anew.
bench: setup
	$(BIN)/avatar bench all --write docs/benchmarks.md

bench-fit: setup  # the whole fit of cnn2 (default preset): about 46 minutes on 2 cores
	$(BIN)/avatar bench fit

pretrain: setup  # preprocess the multispeaker clips (cached in build/) and train avatar/motion/prior.pt
	$(BIN)/python -m avatar.motion.pretrain

clean:
	rm -rf $(VENV) build *.egg-info demo_out
