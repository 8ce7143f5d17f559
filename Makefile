# edgekd: the two set-up commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
DEMO_OUT ?= demo_out

.PHONY: demo test test-slow test-tflm lint bench venv dev sysdeps clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(STAMP)

venv: $(STAMP)
dev: $(DEVSTAMP)

# System packages the tests need: the Arm cross compiler and newlib (C export, firmware and
# emulation tests) and QEMU's Arm system emulator (`edgekd emulate`, the mps2-an386 Cortex-M4F); the
# PostgreSQL server (tests/fit/test_distributed.py starts a throwaway cluster; skipped without it).
sysdeps:
	@if ! command -v arm-none-eabi-g++ >/dev/null 2>&1 || ! command -v qemu-system-arm >/dev/null 2>&1; then \
	  echo "Installing gcc-arm-none-eabi and qemu-system-arm (Debian) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm; \
	fi
	@command -v g++ >/dev/null 2>&1 || { echo "g++ is required (apt-get install g++)"; exit 1; }
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "Installing postgresql (Debian) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends \
	    postgresql ) || echo "postgresql could not be installed: tests/fit/test_distributed.py will be skipped"; \
	fi

demo: $(STAMP)
	$(PY) examples/demo.py --out $(DEMO_OUT)

lint: $(DEVSTAMP)
	$(PY) -m flake8 edgekd tests examples bench

test: $(DEVSTAMP) sysdeps lint
	$(PY) -m pytest -n 2 --dist loadfile

test-slow: $(DEVSTAMP) sysdeps
	$(PY) -m pytest -n 2 --dist loadfile -m slow

# Compile the generated firmware against TFLM source trees (colon-separated), e.g.
#   make test-tflm TFLM=$$HOME/Arduino/libraries/Chirale_TensorFLowLite
# `make test` runs the same checks by itself for trees in shared/tflm/ or ../shared/tflm/ (docs/firmware.md).
test-tflm: $(DEVSTAMP) sysdeps
	@[ -n "$(TFLM)" ] || [ -d shared/tflm ] || [ -d ../shared/tflm ] || { echo "usage: make test-tflm TFLM=DIR[:DIR...] (a TFLM source tree)"; exit 2; }
	EDGEKD_TFLM_TREES="$(TFLM)" $(PY) -m pytest -p no:xdist -rs tests/firmware/test_tflm_headers.py

bench: $(DEVSTAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist *.egg-info .pytest_cache
