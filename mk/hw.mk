# Hardware: cocotb benches, cycle benchmark, core synthesis (owner: hw).
.PHONY: sim bench-hw synth-core

sim: install
	$(PY) -m sim

bench-hw: install
	$(PY) scripts/bench_hw.py --json build/bench_hw.json

synth-core: install
	$(PY) scripts/bench_hw.py --synth --json build/synth_core.json
