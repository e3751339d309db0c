"""The top-level cocotb bench (sim/test_top.py) in Verilator: UART pins only, bit-exact."""
import pytest

pytest.importorskip("cocotb_tools")

from hw.config import sim_config  # noqa: E402
from sim.benches import run_top  # noqa: E402


@pytest.mark.sim
def test_top_bench():
    summary = run_top(sim_config())
    assert summary["tests"] >= 6
    assert summary["failures"] == 0, summary["failed"]


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("P,L", [(8, 8), (16, 16)])
def test_top_bench_other_array_shapes(P, L):
    """The boards' larger arrays: same benches, bit-exact, cycles matching the model."""
    summary = run_top(sim_config(P=P, L=L))
    assert summary["failures"] == 0, summary["failed"]
