# Bitstreams for the boards in boards/ (owner: boards/runtime). YoWASP tools, see docs/boards.md.
#   make bitstream BOARD=ulx3s-85f     -> build/<board>/ + build/<board>/report.{txt,json}
#   make program   BOARD=ulx3s-85f     -> openFPGALoader with the bitstream built above
#   make bitstreams                    -> ulx3s-12f, ulx3s-85f and icebreaker (2-5 min each)
BOARD ?= ulx3s-85f
BITSTREAM_BOARDS ?= ulx3s-12f ulx3s-85f icebreaker
.PHONY: bitstream bitstreams program test-boards

bitstream: install
	nice -n 19 $(PY) -m boards.build --board $(BOARD) --out build

bitstreams: install
	set -e; for b in $(BITSTREAM_BOARDS); do nice -n 19 $(PY) -m boards.build --board $$b --out build; done

program: install
	$(PY) -m boards.build --board $(BOARD) --out build --program-only

test-boards: install
	$(PY) -m pytest tests/test_boards.py tests/test_runtime_framing.py tests/test_runtime_sim.py tests/test_deploy.py -q
