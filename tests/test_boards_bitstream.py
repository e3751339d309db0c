"""Bitstream flow: nextpnr report parsing (fast) and real builds of three boards (fpga, slow)."""
import json
import os
import subprocess
import sys

import pytest

import boards
from boards.build import parse_report, yosys_ff_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_nextpnr_report():
    rep = {"utilization": {"TRELLIS_COMB": {"used": 5000, "available": 24288},
                           "TRELLIS_FF": {"used": 3000, "available": 24288},
                           "DP16KD": {"used": 40, "available": 56},
                           "MULT18X18D": {"used": 4, "available": 28}},
           "fmax": {"$glbnet$clk": {"achieved": 38.75, "constraint": 30.0}}}
    board = boards.get("ulx3s-12f")
    r = parse_report(rep, board)
    assert (r["lut_used"], r["ff_used"], r["ebr_used"], r["dsp_used"]) == (5000, 3000, 40, 4)
    assert r["fmax_mhz"] == 38.75 and r["target_mhz"] == board.clock_hz / 1e6
    assert r["timing_met"] is (38.75 >= board.clock_hz / 1e6)
    rep["fmax"]["$glbnet$clk"]["achieved"] = board.clock_hz / 1e6 - 0.1
    assert parse_report(rep, board)["timing_met"] is False


def test_yosys_ff_count_reads_the_last_statistics_block():
    rpt = ("Printing statistics.\n  9 SB_DFF\n"            # an earlier pass: ignored
           "Printing statistics.\n=== top ===\n  4292 SB_LUT4\n   175 SB_DFF\n    18 SB_DFFE\n"
           "  1861 SB_DFFESR\n    20 SB_RAM40_4K\n=== design hierarchy ===\n  175 SB_DFF\n")
    assert yosys_ff_count(rpt) == 175 + 18 + 1861
    assert yosys_ff_count("no statistics here") is None


@pytest.mark.fpga
@pytest.mark.parametrize("name", ["ulx3s-12f", "ulx3s-85f",
                                  pytest.param("icebreaker", marks=pytest.mark.slow)])
def test_bitstream_meets_timing(name):
    """A real build (3-6 minutes each on 2 busy cores): routed, timing met, resources in range."""
    out = "build/test-bitstream"
    r = subprocess.run([sys.executable, "-m", "boards.build", "--board", name, "--out", out],
                       capture_output=True, text=True, timeout=3600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads(open(os.path.join(ROOT, out, name, "report.json")).read())
    board = boards.get(name)
    assert rep["pass"] and rep["fmax_mhz"] >= board.clock_hz / 1e6
    for k in ("lut", "ff", "ebr"):
        assert 0 < rep[f"{k}_used"] <= rep[f"{k}_available"]
    assert rep["dsp_used"] >= 1                      # the requantizer's multipliers
    assert rep["accel_P"] == board.accel["P"] and rep["accel_L"] == board.accel["L"]
    assert os.path.getsize(os.path.join(ROOT, rep["bitstream"])) > 100_000
