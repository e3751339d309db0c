"""AccelConfig, the weight-word packer, and the cycle model (no simulator needed)."""
import math

import numpy as np
import pytest

from hw.config import AccelConfig, sim_config
from sim.layers import VIT_FMNIST_LAYERS, pack_words
from sw import cycle_model
from sw.runtime import device, framing as fr


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="powers of two"):
        AccelConfig(P=3)
    with pytest.raises(ValueError, match="clocks per bit"):
        AccelConfig(clock_hz=10_000_000, baud=3_000_000)
    with pytest.raises(ValueError, match="integer divisor"):
        AccelConfig(clock_hz=25_000_000, baud=3_000_000)      # 8.33 clocks per bit
    with pytest.raises(ValueError, match="positive"):
        AccelConfig(max_k=0)
    assert AccelConfig(clock_hz=48_000_000, baud=3_000_000).baud_divisor == 16


@pytest.mark.parametrize("max_k", [1, 2, 3, 49, 64, 512, 1000, 4096])
def test_sum_width_holds_the_extremes(max_k):
    cfg = AccelConfig(max_k=max_k)
    lo, hi = -(1 << (cfg.sum_bits - 1)), (1 << (cfg.sum_bits - 1)) - 1
    assert lo <= -128 * max_k and 128 * max_k <= hi          # -1 * -128 summed max_k times
    if max_k & (max_k - 1) == 0 and max_k > 1:      # tight for powers of two: one bit less fails
        assert 128 * max_k > (1 << (cfg.sum_bits - 2)) - 1
    assert cfg.acc_bits >= 33 and -(2**31) - 128 * max_k >= -(1 << (cfg.acc_bits - 1))


def test_hello_record_is_the_host_format():
    cfg = sim_config()
    h = fr.Hello.unpack(cfg.hello_record())
    assert (h.P, h.L, h.max_payload, h.baud, h.build_id) == (cfg.P, cfg.L, cfg.max_payload,
                                                            cfg.baud, cfg.build_id)


@pytest.mark.parametrize("P,L,O,K", [(4, 8, 10, 49), (8, 8, 64, 64), (2, 2, 3, 5), (1, 4, 5, 7)])
def test_weight_words_match_the_host_packer(P, L, O, K):
    """Two independent implementations of docs/protocol.md's word format agree."""
    trits = np.random.default_rng(O * K).integers(-1, 2, size=(O, K)).astype(np.int8)
    words = pack_words(trits, P, L)
    assert words == device.pack_weight_words(trits, P, L)
    assert len(words) == math.ceil(O / P) * math.ceil(K / L) * math.ceil(2 * P * L / 8)


def test_cycle_model_simple_counts():
    # one group, one chunk: 1 issue cycle + 3 MAC + 4 channels through 1 + 5 stages
    assert cycle_model.run_cycles(8, 4, 1, 4, 8) == 1 + 3 + 4 + 6
    # many chunks: C cycles per group
    assert cycle_model.run_cycles(64, 8, 1, 4, 8) == 8 + 8 + 3 + 10
    # fewer chunks than P: the requantizer paces groups at P cycles
    assert cycle_model.run_cycles(8, 16, 1, 4, 8) == 1 + 3 * 4 + 3 + 10


def test_vit_fmnist_array_utilisation_at_least_90_percent():
    cfg = sim_config()
    macs = sum(cycle_model.useful_macs(K, O, T) for _, K, O, T in VIT_FMNIST_LAYERS)
    cycles = sum(cycle_model.run_cycles(K, O, T, cfg.P, cfg.L) for _, K, O, T in VIT_FMNIST_LAYERS)
    assert macs / (cfg.P * cfg.L * cycles) >= 0.90


def test_generate_verilog_ports(tmp_path):
    import re
    from hw.top import generate_verilog
    path = generate_verilog(sim_config(), tmp_path / "t.v", name="tervit_top")
    head = re.search(r"^module tervit_top\(([^)]*)\);", path.read_text(), re.M)
    assert head and {p.strip() for p in head.group(1).split(",")} == {"clk", "rst", "uart_rx",
                                                                       "uart_tx"}
    with pytest.raises(ValueError, match="clashes"):
        generate_verilog(sim_config(), tmp_path / "u.v", name="uart_rx")
