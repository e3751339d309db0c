"""The benches, by name: what `make sim` and tests/test_sim*.py run."""
from __future__ import annotations

from hw.config import AccelConfig, sim_config
from sim.runner import run_bench


def run_top(cfg: AccelConfig | None = None, testcase=None, extra_env=None) -> dict:
    from hw.top import generate_verilog
    cfg = cfg or sim_config()
    name = "top" if cfg == sim_config() else f"top-P{cfg.P}xL{cfg.L}"
    return run_bench(name, lambda p: generate_verilog(cfg, p, name="tervit_top"), "sim.test_top",
                     cfg, toplevel="tervit_top", testcase=testcase, extra_env=extra_env)


def run_units(cfg: AccelConfig | None = None, testcase=None) -> dict:
    from sim.units import generate_units_verilog
    cfg = cfg or sim_config()
    return run_bench("units", lambda p: generate_units_verilog(cfg, p), "sim.test_units", cfg,
                     toplevel="tervit_units", testcase=testcase)


BENCHES = {"units": run_units, "top": run_top}
