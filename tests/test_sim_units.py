"""Unit benches in Verilator (sim/test_units.py): MAC array and requantizer, every output compared."""
import pytest

pytest.importorskip("cocotb_tools")

from hw.config import sim_config  # noqa: E402
from sim.benches import run_units  # noqa: E402


@pytest.mark.sim
def test_units_bench():
    summary = run_units(sim_config())
    assert summary["tests"] == 2
    assert summary["failures"] == 0, summary["failed"]
