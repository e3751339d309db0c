"""Bitstream flow: nextpnr report parsing (fast) and a real ULX3S-12F build (fpga, slow)."""
import json
import os
import subprocess
import sys

import pytest

import boards
from boards.build import parse_report

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


@pytest.mark.fpga
@pytest.mark.slow
def test_ulx3s_12f_bitstream_meets_timing():
    out = "build/test-bitstream"
    r = subprocess.run([sys.executable, "-m", "boards.build", "--board", "ulx3s-12f", "--out", out],
                       capture_output=True, text=True, timeout=3600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads(open(os.path.join(ROOT, out, "ulx3s-12f", "report.json")).read())
    assert rep["pass"] and rep["fmax_mhz"] >= boards.get("ulx3s-12f").clock_hz / 1e6
    for k in ("lut", "ff", "ebr"):
        assert 0 < rep[f"{k}_used"] <= rep[f"{k}_available"]
    assert os.path.getsize(os.path.join(ROOT, rep["bitstream"])) > 100_000
