"""The board registry: names, aliases, clocks, sizes; the unknown-name error."""
import subprocess
import sys

import pytest

import boards

EXPECTED = ["icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f"]


def test_names_and_alias():
    assert boards.names() == EXPECTED
    assert boards.get("ulx3s") is boards.get("ulx3s-85f")
    assert boards.get("ULX3S-12F").name == "ulx3s-12f"


def test_unknown_board_lists_known_ones():
    with pytest.raises(ValueError) as e:
        boards.get("ulx3s-99f")
    msg = str(e.value)
    assert "ulx3s-99f" in msg and all(n in msg for n in EXPECTED) and "\n" not in msg


@pytest.mark.parametrize("name", EXPECTED)
def test_clock_divides_baud_and_config_builds(name):
    b = boards.get(name)
    assert b.clock_hz % b.baud == 0
    cfg = b.accel_config()
    assert cfg.baud_divisor * cfg.baud == cfg.clock_hz
    sim = b.accel_config(sim=True)
    assert sim.baud_divisor == 4 and sim.P == cfg.P and sim.weight_words == cfg.weight_words
    assert b.platform().device == b.device


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.startswith("ulx3s")])
def test_ulx3s_pll_makes_the_clock(name):
    """ECP5 EHXPLLL: f_out = f_in * CLKFB_DIV / CLKI_DIV with CLKOP feedback; PFD >= 3.125 MHz,
    VCO = f_out * CLKOP_DIV in 400..800 MHz; 3 Mbaud for the FT231X."""
    b = boards.get(name)
    p = b.pll
    assert b.osc_hz * p["CLKFB_DIV"] // p["CLKI_DIV"] == b.clock_hz
    assert b.osc_hz / p["CLKI_DIV"] >= 3.125e6
    assert 400e6 <= b.clock_hz * p["CLKOP_DIV"] <= 800e6
    assert b.baud == 3_000_000 and (0x0403, 0x6015) in b.usb_ids


@pytest.mark.parametrize("name", EXPECTED)
def test_memories_fit_the_fpga(name):
    """Weight memory (2 bits a trit, widest block RAM mode) and parameters (72 bits a channel)
    take at most 85 % of the block RAM bits (SPRAM on the UP5K holds the weights)."""
    b = boards.get(name)
    a, r = b.accel, b.resources
    weight_bits = a["weight_words"] * 2 * a["P"] * a["L"]
    param_bits = a["param_channels"] * 72
    if "spram" in r:
        assert weight_bits <= r["spram"] * 256 * 1024
        assert param_bits <= 0.85 * r["ebr"] * r["ebr_bits"]
    else:
        assert weight_bits + param_bits <= 0.85 * r["ebr"] * r["ebr_bits"]


def test_bigger_boards_have_bigger_arrays():
    macs = [boards.get(f"ulx3s-{s}").accel["P"] * boards.get(f"ulx3s-{s}").accel["L"]
            for s in ("12f", "25f", "45f", "85f")]
    assert macs == sorted(macs) and macs[0] < macs[-1]


def test_build_cli_unknown_board_exit_2():
    r = subprocess.run([sys.executable, "-m", "boards.build", "--board", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "known boards" in r.stderr
