# Bitstreams for the boards in boards/ (owner: boards/runtime). YoWASP tools, see docs/boards.md.
#   make bitstream BOARD=ulx3s-85f     -> build/<board>/ + build/<board>/report.{txt,json}
#   make program   BOARD=ulx3s-85f     -> openFPGALoader with the bitstream built above
BOARD ?= ulx3s-85f
.PHONY: bitstream program test-boards

bitstream: install
	nice $(PY) -m boards.build --board $(BOARD) --out build

program: install
	$(PY) -m boards.build --board $(BOARD) --out build --program-only

test-boards: install
	$(PY) -m pytest tests/test_boards.py tests/test_runtime_framing.py tests/test_runtime_sim.py tests/test_deploy.py -q
