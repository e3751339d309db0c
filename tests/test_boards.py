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
    """Weight memory (2 bits a trit) and parameters (72 bits a channel) take at most 85 % of
    the block RAM bits (on the UP5K too: its SPRAMs are single-port, the weights are not)."""
    b = boards.get(name)
    a, r = b.accel, b.resources
    weight_bits = a["weight_words"] * 2 * a["P"] * a["L"]
    param_bits = a["param_channels"] * 72
    assert weight_bits + param_bits <= 0.85 * r["ebr"] * r["ebr_bits"]


# vit-fmnist's linear layers (K, O, tokens): patch embedding, 4 blocks of qkv/proj/fc1/fc2, head
VIT_FMNIST = [(49, 64, 16)] + 4 * [(64, 192, 17), (64, 64, 17), (64, 128, 17), (128, 64, 17)] \
    + [(64, 10, 1)]


def _vit_fmnist_utilisation(P, L, layers=VIT_FMNIST):
    """Useful MACs / (P*L*cycles), cycles from an independent count of the array's schedule:
    a group of P channels takes max(ceil(K/L), P) cycles (one requantizer), plus the drain."""
    useful = sum(K * O * T for K, O, T in layers)
    cycles = 0
    for K, O, T in layers:
        C, G = -(-K // L), -(-O // P)
        cycles += C + (T * G - 1) * max(C, P) + 3 + max(P, O - (G - 1) * P + 6)
    return useful / (P * L * cycles)


def test_vit_fmnist_shape_facts():
    assert sum(K * O for K, O, _ in VIT_FMNIST) == 134_848
    assert sum(O for _, O, _ in VIT_FMNIST) == 1866


@pytest.mark.parametrize("name", EXPECTED)
def test_array_keeps_90_percent_busy_on_vit_fmnist(name):
    """One requantizer: arrays with P > ceil(K/L) idle; every board's shape stays >= 90 %."""
    from sw.cycle_model import run_cycles
    P, L = boards.get(name).accel["P"], boards.get(name).accel["L"]
    u = _vit_fmnist_utilisation(P, L)
    assert u >= 0.90
    model = sum(run_cycles(K, O, T, P, L) for K, O, T in VIT_FMNIST)
    assert sum(K * O * T for K, O, T in VIT_FMNIST) / (P * L * model) == pytest.approx(u, rel=1e-12)


def test_utilisation_count_sees_the_requantizer_bound():
    """The count behind the test above reproduces docs/hardware.md's table (one block of each
    layer shape): 8 x 8 96.5 %, 4 x 16 96.8 %, 16 x 8 54.2 %, 32 x 16 13.6 %."""
    one_block = VIT_FMNIST[:5] + VIT_FMNIST[-1:]
    for (P, L), pct in {(8, 8): 96.5, (4, 16): 96.8, (16, 8): 54.2, (32, 16): 13.6}.items():
        assert round(100 * _vit_fmnist_utilisation(P, L, one_block), 1) == pct


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.startswith("ulx3s")])
def test_ulx3s_holds_the_demo_model(name):
    a = boards.get(name).accel
    words = sum(-(-O // a["P"]) * -(-K // a["L"]) for K, O, _ in VIT_FMNIST)
    assert words <= a["weight_words"] and 1866 <= a["param_channels"]
    assert all(K <= a["max_k"] and O <= a["max_o"] and T <= a["max_tokens"]
               and 3 + T * K <= a["max_payload"] and T * O <= a["max_payload"]
               for K, O, T in VIT_FMNIST)


def test_bigger_boards_never_have_less_memory():
    sizes = [boards.get(f"ulx3s-{s}").accel for s in ("12f", "25f", "45f", "85f")]
    for key in ("weight_words", "param_channels"):
        vals = [a[key] for a in sizes]
        assert vals == sorted(vals)


def test_build_cli_unknown_board_exit_2():
    r = subprocess.run([sys.executable, "-m", "boards.build", "--board", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "known boards" in r.stderr
