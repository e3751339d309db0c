"""Unit benches: the MAC array against numpy dot products, the requantizer against
sw.ref.ops.requantize; one vector per clock, every output compared."""
from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.runner import config_from_env
from sim.uart_bfm import CLOCK_NS
from sw.ref import ops

CFG = config_from_env()
P, L, S = CFG.P, CFG.L, CFG.sum_bits
CODE = {0: 0, 1: 1, -1: 3}


async def start(dut):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, "ns").start())
    for name in ("mac_valid", "mac_first", "mac_last", "rq_valid"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


def signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


# ---------------------------------------------------------------------------------------
def chunk_words(trits: np.ndarray, x: np.ndarray):
    """trits [P, K], x [K] -> per chunk (weights int, x int) as the MAC array's ports take them."""
    K = x.shape[0]
    C = -(-K // L)
    out = []
    for c in range(C):
        w = xv = 0
        for l in range(L):
            k = c * L + l
            xv |= (int(x[k]) & 0xFF if k < K else 0) << (8 * l)
            for p in range(P):
                if k < K:
                    w |= CODE[int(trits[p, k])] << (2 * (p * L + l))
        out.append((w, xv))
    return out


async def mac_stream(dut, cases):
    """Feed all cases back to back (one chunk per cycle); return the P sums of each."""
    results = []

    async def monitor():
        while len(results) < len(cases):
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.mac_result_valid.value):
                raw = int(dut.mac_result.value)
                results.append([signed((raw >> (S * p)) & ((1 << S) - 1), S) for p in range(P)])

    mon = cocotb.start_soon(monitor())
    for trits, x in cases:
        chunks = chunk_words(trits, x)
        for i, (w, xv) in enumerate(chunks):
            dut.mac_valid.value = 1
            dut.mac_first.value = int(i == 0)
            dut.mac_last.value = int(i == len(chunks) - 1)
            dut.mac_weights.value = w
            dut.mac_x.value = xv
            await RisingEdge(dut.clk)
    dut.mac_valid.value = 0
    await mon
    return results


@cocotb.test()
async def test_mac_array(dut):
    """Random and corner inputs, every sum compared with an int64 numpy dot product."""
    await start(dut)
    rng = np.random.default_rng(10)
    cases = []
    for K in (1, L - 1, L, L + 1, 49, 64, 128, CFG.max_k):
        cases.append((rng.integers(-1, 2, size=(P, K)).astype(np.int8),
                      rng.integers(-128, 128, size=K).astype(np.int8)))
    K = CFG.max_k
    cases.append((np.full((P, K), -1, np.int8), np.full(K, -128, np.int8)))     # +128*K
    cases.append((np.full((P, K), 1, np.int8), np.full(K, -128, np.int8)))      # -128*K
    cases.append((np.full((P, K), 1, np.int8), np.full(K, 127, np.int8)))       # +127*K
    cases.append((np.zeros((P, K), np.int8), rng.integers(-128, 128, size=K).astype(np.int8)))
    for _ in range(40):
        K = int(rng.integers(1, 200))
        cases.append((rng.integers(-1, 2, size=(P, K)).astype(np.int8),
                      rng.integers(-128, 128, size=K).astype(np.int8)))
    got = await mac_stream(dut, cases)
    for i, ((trits, x), sums) in enumerate(zip(cases, got)):
        want = (trits.astype(np.int64) @ x.astype(np.int64)).tolist()
        assert sums == want, f"case {i} (K={x.shape[0]}): got {sums}, want {want}"
    assert got[len(got) - 40 - 4][0] == 128 * CFG.max_k


# ---------------------------------------------------------------------------------------
async def rq_stream(dut, acc, bias, m0, shift, zp):
    out = []
    n = len(acc)

    async def monitor():
        while len(out) < n:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.rq_out_valid.value):
                out.append(signed(int(dut.rq_out.value), 8))

    mon = cocotb.start_soon(monitor())
    for i in range(n):
        dut.rq_valid.value = 1
        dut.rq_acc.value = int(acc[i])
        dut.rq_bias.value = int(bias[i])
        dut.rq_m0.value = int(m0[i])
        dut.rq_shift.value = int(shift[i])
        dut.rq_zp.value = int(zp[i])
        await RisingEdge(dut.clk)
    dut.rq_valid.value = 0
    await mon
    return np.array(out, dtype=np.int64)


@cocotb.test()
async def test_requantizer(dut):
    """Random, rounding ties, saturation, shift extremes, m0 = 0, int32-limit biases."""
    await start(dut)
    rng = np.random.default_rng(11)
    n = 3000
    lim = 128 * CFG.max_k
    acc = rng.integers(-lim, lim + 1, size=n)
    bias = rng.integers(-(1 << 20), 1 << 20, size=n)
    reals = np.exp(rng.uniform(np.log(1e-6), np.log(4.0), size=n))
    ms = [ops.quantize_multiplier(r) for r in reals]
    m0 = np.array([m for m, _ in ms])
    shift = np.array([s for _, s in ms])
    zp = rng.integers(-128, 128, size=n)
    # ties: m0 = 2^30, shift = 0 -> y = round(a / 2), a odd
    acc[:200] = 2 * rng.integers(-200, 200, size=200) + 1
    bias[:200] = 0
    m0[:200], shift[:200] = 1 << 30, 0
    zp[:200] = 0
    # extremes of shift and m0
    shift[200:300], m0[200:300] = -31, (1 << 31) - 1
    shift[300:400], m0[300:400] = 30, (1 << 31) - 1
    m0[400:450] = 0
    # int32-limit biases, with and without sums pushing past int32
    bias[450:500] = 2**31 - 1
    bias[500:550] = -2**31
    acc[450:550] = rng.integers(-lim, lim + 1, size=100)
    acc[550:560], bias[550:560] = lim, 0
    acc[560:570], bias[560:570] = -lim, 0
    got = await rq_stream(dut, acc, bias, m0, shift, zp)
    want = np.array([int(ops.requantize(np.int64(a + b), m, s, z))
                     for a, b, m, s, z in zip(acc, bias, m0, shift, zp)])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} of {n} differ; first #{bad[0]}: acc={acc[bad[0]]} "
                           f"bias={bias[bad[0]]} m0={m0[bad[0]]} shift={shift[bad[0]]} "
                           f"zp={zp[bad[0]]} got {got[bad[0]]} want {want[bad[0]]}")
    # an independent oracle for the ties: round half away from zero of a / 2
    halves = np.array([int(np.sign(a) * ((abs(a) + 1) // 2)) for a in acc[:200]])
    assert np.array_equal(got[:200], np.clip(halves, -128, 127))
    # multiplier ~2^30: every nonzero accumulator saturates toward its sign
    a = acc[300:400] + bias[300:400]
    assert np.array_equal(got[300:400], np.where(a > 0, 127, np.where(a < 0, -128, zp[300:400])))
