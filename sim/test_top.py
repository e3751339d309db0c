"""Top-level cocotb bench: everything through the UART pins only, compared with sw.ref.ops.

Frames are built and parsed with sw/runtime/framing.py (the host's own codec); results are
compared bit for bit with sw.ref.ops.ternary_linear, cycle counts with sw.cycle_model.
"""
from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotb.utils import get_sim_time

from sim.layers import (SWIN_SMALL_LAYERS, VIT_FMNIST_LAYERS, pack_words, random_layer,
                        reference)
from sim.runner import config_from_env
from sim.uart_bfm import CLOCK_NS, UartDriver, UartMonitor
from sw import cycle_model
from sw.runtime import framing as fr

CFG = config_from_env()
BIT_NS = CFG.baud_divisor * CLOCK_NS
BYTE_NS = 10 * BIT_NS


class Host:
    """A minimal host: one request, one reply, through the pins."""

    def __init__(self, dut):
        self.dut = dut
        self.tx = UartDriver(dut.uart_rx, CFG.baud_divisor)
        self.rx = UartMonitor(dut.uart_tx, CFG.baud_divisor)
        self.seq = 0
        self.layout = {}   # slot -> (K, O)
        self.next_word = 0
        self.next_channel = 0

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 5)

    async def read_frame(self, timeout_ns: int) -> fr.Frame:
        head = await self.rx.read(6, timeout_ns)
        assert head[:2] == fr.SYNC, f"reply starts with {head.hex()}"
        length = int.from_bytes(head[2:4], "little")
        rest = await self.rx.read(length + 4, (length + 8) * BYTE_NS * 2)
        return fr.decode(head + rest)

    async def request(self, cmd: int, payload: bytes = b"", *, seq=None, exec_cycles=2000,
                      reply_len=64) -> fr.Frame:
        if seq is None:
            self.seq = (self.seq + 1) & 0xFF
            seq = self.seq
        await self.tx.send(fr.encode(seq, cmd, payload))
        reply = await self.read_frame((exec_cycles * CLOCK_NS + (reply_len + 20) * BYTE_NS) * 2
                                      + 20 * BYTE_NS)
        assert reply.seq == seq, f"reply SEQ {reply.seq} != {seq}"
        return reply

    async def ok(self, cmd: int, payload: bytes = b"", **kw) -> bytes:
        reply = await self.request(cmd, payload, **kw)
        assert reply.cmd == cmd | fr.REPLY_BIT, \
            f"cmd {cmd:#x}: got {reply.cmd:#x} {reply.payload.hex()}"
        return reply.payload

    async def expect_error(self, cmd: int, payload: bytes, code: int, **kw):
        reply = await self.request(cmd, payload, **kw)
        assert reply.is_error, f"cmd {cmd:#x}: expected error {code}, got {reply.cmd:#x}"
        assert reply.error() == (code, cmd), f"cmd {cmd:#x}: got error {reply.error()}, want {code}"

    async def upload(self, slot: int, layer) -> None:
        O, K = layer["trits"].shape
        words = pack_words(layer["trits"], CFG.P, CFG.L)
        wb = CFG.word_bytes
        per_frame = (CFG.max_payload - 4) // wb
        base = self.next_word
        for i in range(0, len(words) // wb, per_frame):
            chunk = words[i * wb:(i + per_frame) * wb]
            await self.ok(fr.WRITE_WEIGHTS, fr.write_weights_payload(base + i, chunk),
                          exec_cycles=3 * len(chunk) + 100)
        per_frame = (CFG.max_payload - 2) // 9
        pbase = self.next_channel
        for i in range(0, O, per_frame):
            sl = slice(i, i + per_frame)
            payload = fr.write_params_payload(pbase + i, layer["bias"][sl], layer["m0"][sl],
                                              layer["shift"][sl])
            await self.ok(fr.WRITE_PARAMS, payload, exec_cycles=3 * len(payload) + 100)
        await self.ok(fr.SET_LAYER, fr.set_layer_payload(slot, K, O, base, pbase, layer["zp"]),
                      exec_cycles=2 * O + 100)
        self.next_word += len(words) // wb
        self.next_channel += O
        self.layout[slot] = (K, O)

    async def run(self, slot: int, x: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Run all tokens of x, split into RUNs that fit the payload; returns (y, cycles)."""
        K, O = self.layout[slot]
        per_run = min(CFG.max_tokens, (CFG.max_payload - 3) // K, CFG.out_bytes // O)
        ys, cycles = [], []
        for i in range(0, x.shape[0], per_run):
            xs = x[i:i + per_run]
            T = xs.shape[0]
            exp_cycles = cycle_model.run_cycles(K, O, T, CFG.P, CFG.L)
            out = await self.ok(fr.RUN, fr.run_payload(slot, T, xs.astype(np.int8).tobytes()),
                                exec_cycles=2 * exp_cycles + 4 * T + 200, reply_len=T * O)
            assert len(out) == T * O
            ys.append(np.frombuffer(out, dtype=np.int8).reshape(T, O))
            cyc = await self.ok(fr.CYCLES)
            cycles.append(fr.unpack_cycles(cyc)[1])
        return np.concatenate(ys), cycles


async def start(dut) -> Host:
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, "ns").start())
    host = Host(dut)
    await host.reset()
    return host


def check_layer(name, layer, got, cycles, K, O, T):
    want = reference(layer)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{name}: {len(bad)} of {want.size} outputs differ, first at "
                           f"{tuple(bad[0])}: got {got[tuple(bad[0])]} want {want[tuple(bad[0])]}")
    per_run = min(CFG.max_tokens, (CFG.max_payload - 3) // K, CFG.out_bytes // O)
    for i, c in enumerate(cycles):
        t = min(per_run, T - i * per_run)
        model = cycle_model.run_cycles(K, O, t, CFG.P, CFG.L)
        assert abs(c - model) <= 0.05 * model, f"{name}: CYCLES {c} vs model {model}"
    return want


@cocotb.test()
async def test_hello(dut):
    """HELLO returns the configuration record, field by field."""
    host = await start(dut)
    rec = await host.ok(fr.HELLO)
    hello = fr.Hello.unpack(rec)
    assert (hello.protocol_version, hello.P, hello.L, hello.slots) == (1, CFG.P, CFG.L, CFG.slots)
    assert (hello.weight_words, hello.param_channels, hello.max_k, hello.max_o) == \
        (CFG.weight_words, CFG.param_channels, CFG.max_k, CFG.max_o)
    assert (hello.max_tokens, hello.max_payload, hello.clock_hz, hello.baud) == \
        (CFG.max_tokens, CFG.max_payload, CFG.clock_hz, CFG.baud)
    assert (hello.rx_timeout_us, hello.build_id) == (CFG.rx_timeout_us, CFG.build_id)
    assert rec[-8:] == bytes(8)
    assert host.rx.framing_errors == 0


async def _model_layers(dut, layers, seed, report=None):
    host = await start(dut)
    rng = np.random.default_rng(seed)
    data = {}
    for slot, (name, K, O, T) in enumerate(layers):
        t0, w0 = get_sim_time("ns"), time.monotonic()
        data[name] = random_layer(rng, K, O, T)
        await host.upload(slot % CFG.slots, data[name])
        got, cycles = await host.run(slot % CFG.slots, data[name]["x"])
        check_layer(name, data[name], got, cycles, K, O, T)
        dut._log.info(f"{name} K={K} O={O} T={T}: bit-exact, cycles {cycles} "
                      f"(model {cycle_model.run_cycles(K, O, min(T, 10**9), CFG.P, CFG.L)})")
        if report is not None:
            report.append(dict(layer=name, K=K, O=O, tokens=T, cycles=sum(cycles), runs=len(cycles),
                               model=sum(cycle_model.run_cycles(K, O, t, CFG.P, CFG.L)
                                         for t in _run_sizes(K, O, T)),
                               sim_cycles=int((get_sim_time("ns") - t0) / CLOCK_NS),
                               wall_s=time.monotonic() - w0))
        if slot % CFG.slots == CFG.slots - 1:
            host.next_word = host.next_channel = 0
    assert host.rx.framing_errors == 0


def _run_sizes(K, O, T):
    per_run = min(CFG.max_tokens, (CFG.max_payload - 3) // K, CFG.out_bytes // O)
    return [min(per_run, T - i) for i in range(0, T, per_run)]


@cocotb.test()
async def test_vit_fmnist_layers(dut):
    """Every ternary linear layer shape of vit-fmnist, bit-exact, cycles within 5 % of the model."""
    report = []
    await _model_layers(dut, VIT_FMNIST_LAYERS, 1, report)
    if os.environ.get("TERVIT_BENCH_OUT"):
        with open(os.environ["TERVIT_BENCH_OUT"], "w") as f:
            json.dump(report, f, indent=1)


@cocotb.test(skip=os.environ.get("TERVIT_SIM_SWIN", "1") == "0")
async def test_swin_small_layers(dut):
    """Every distinct ternary linear layer shape of a small Swin, split into RUNs that fit."""
    await _model_layers(dut, SWIN_SMALL_LAYERS, 2)


@cocotb.test()
async def test_corner_cases(dut):
    """-128 inputs, +-128*K sums, saturation both ways, all-zero trits, largest K, K < L*P."""
    host = await start(dut)
    rng = np.random.default_rng(3)
    cases = []
    # largest K, all inputs -128 and all trits -1 on some channels: the sum +128*K
    K, O = CFG.max_k, 2 * CFG.P + 1
    lay = random_layer(rng, K, O, 2)
    lay["x"][0, :] = -128
    lay["trits"][0, :] = -1
    lay["trits"][1, :] = 1
    lay["trits"][2, :] = 0
    lay["m0"][:4] = [1 << 30, 1 << 30, (1 << 31) - 1, 0]
    lay["shift"][:4] = [-9, -9, 30, 0]     # 2^16 * 2^30 * 2^(-9-31) = 64
    lay["bias"][:3] = [0, 0, 0]
    cases.append(("largest_k", lay))
    # saturation: huge multipliers, extreme biases, m0 = 0
    lay = random_layer(rng, 40, 11, 3)
    lay["m0"][:] = (1 << 31) - 1
    lay["shift"][:] = rng.integers(-31, 31, size=11)
    lay["bias"][:4] = [2**31 - 1, -2**31, 2**31 - 1 - 128 * 40, -2**31 + 128 * 40]
    cases.append(("saturation", lay))
    # all-zero trits: the output is requantize(bias)
    lay = random_layer(rng, 24, 8, 2)
    lay["trits"][:] = 0
    cases.append(("zero_trits", lay))
    # tiny K: one chunk per group, so the requantizer limits the pace (stall path)
    cases.append(("k_one", random_layer(rng, 1, 7, 5)))
    cases.append(("k_under_p", random_layer(rng, CFG.L + 3, 2 * CFG.P - 1, 4)))
    for slot, (name, lay) in enumerate(cases):
        O, K = lay["trits"].shape
        T = lay["x"].shape[0]
        await host.upload(slot, lay)
        got, cycles = await host.run(slot, lay["x"])
        check_layer(name, lay, got, cycles, K, O, T)
    # independent of the reference: acc = +-128 * 512 = +-2^16, times 2^30 * 2^(-9 - 31) = +-64
    assert CFG.max_k == 512
    zp = cases[0][1]["zp"]
    assert tuple(reference(cases[0][1])[0, :2]) == (64 + zp, -64 + zp)


@cocotb.test()
async def test_errors(dut):
    """Every malformed command gets its error code, and the device keeps working."""
    host = await start(dut)
    rng = np.random.default_rng(4)
    lay = random_layer(rng, 20, 6, 2)
    await host.upload(0, lay)
    E = host.expect_error
    await E(fr.HELLO, b"\x00", fr.ERR_BAD_LENGTH)
    await E(fr.CYCLES, b"\x00\x00", fr.ERR_BAD_LENGTH)
    await E(0x42, b"", fr.ERR_UNKNOWN_CMD)
    await E(0x00, b"abc", fr.ERR_UNKNOWN_CMD)
    await E(fr.SET_LAYER, fr.set_layer_payload(0, 8, 8, 0, 0, 0)[:-1], fr.ERR_BAD_LENGTH)
    await E(fr.SET_LAYER, fr.set_layer_payload(CFG.slots, 8, 8, 0, 0, 0), fr.ERR_BAD_SLOT)
    await E(fr.SET_LAYER, fr.set_layer_payload(1, CFG.max_k + 1, 8, 0, 0, 0), fr.ERR_OUT_OF_RANGE)
    await E(fr.SET_LAYER, fr.set_layer_payload(1, 0, 8, 0, 0, 0), fr.ERR_OUT_OF_RANGE)
    await E(fr.SET_LAYER, fr.set_layer_payload(1, 8, CFG.max_o + 1, 0, 0, 0), fr.ERR_OUT_OF_RANGE)
    await E(fr.SET_LAYER, fr.set_layer_payload(1, 64, 64, CFG.weight_words - 10, 0, 0),
            fr.ERR_OUT_OF_RANGE)
    await E(fr.SET_LAYER, fr.set_layer_payload(1, 8, 8, 0, CFG.param_channels - 7, 0),
            fr.ERR_OUT_OF_RANGE)
    wb = CFG.word_bytes
    await E(fr.WRITE_WEIGHTS, fr.write_weights_payload(0, bytes(wb + 1)), fr.ERR_BAD_LENGTH)
    await E(fr.WRITE_WEIGHTS, fr.write_weights_payload(0, b""), fr.ERR_BAD_LENGTH)
    await E(fr.WRITE_WEIGHTS, fr.write_weights_payload(CFG.weight_words - 1, bytes(2 * wb)),
            fr.ERR_OUT_OF_RANGE)
    await E(fr.WRITE_PARAMS, b"\x00\x00" + bytes(10), fr.ERR_BAD_LENGTH)
    await E(fr.WRITE_PARAMS, b"\x00", fr.ERR_BAD_LENGTH)
    await E(fr.WRITE_PARAMS, fr.write_params_payload(CFG.param_channels - 1, [0, 0], [0, 0],
                                                     [0, 0]), fr.ERR_OUT_OF_RANGE)
    await E(fr.RUN, b"\x00\x01", fr.ERR_BAD_LENGTH)
    await E(fr.RUN, fr.run_payload(1, 1, bytes(20)), fr.ERR_BAD_SLOT)       # never configured
    await E(fr.RUN, fr.run_payload(CFG.slots, 1, bytes(20)), fr.ERR_BAD_SLOT)
    await E(fr.RUN, fr.run_payload(0, 0, b""), fr.ERR_OUT_OF_RANGE)
    await E(fr.RUN, fr.run_payload(0, CFG.max_tokens + 1, b""), fr.ERR_OUT_OF_RANGE,
            exec_cycles=CFG.max_tokens + 100)
    await E(fr.RUN, fr.run_payload(0, 2, bytes(39)), fr.ERR_BAD_LENGTH)
    await E(fr.RUN, fr.run_payload(0, 2, bytes(41)), fr.ERR_BAD_LENGTH)
    # a bad CRC: error CRC with the SEQ as received, and not executed
    frame = bytearray(fr.encode(77, fr.SET_LAYER, fr.set_layer_payload(0, 20, 6, 0, 0, 5)))
    frame[-1] ^= 0x01
    await host.tx.send(bytes(frame))
    reply = await host.read_frame(40 * BYTE_NS)
    assert (reply.seq, reply.error()) == (77, (fr.ERR_CRC, fr.SET_LAYER))
    # after all that, slot 0 is still the layer uploaded first, bit-exact
    got, cycles = await host.run(0, lay["x"])
    check_layer("after_errors", lay, got, cycles, 20, 6, 2)


@cocotb.test()
async def test_idempotent_retry(dut):
    """A good frame with the last SEQ is answered again, not executed again."""
    host = await start(dut)
    rng = np.random.default_rng(5)
    lay = random_layer(rng, 16, 5, 3)
    await host.upload(0, lay)
    busy0 = fr.unpack_cycles(await host.ok(fr.CYCLES))[0]
    payload = fr.run_payload(0, 3, lay["x"].tobytes())
    first = await host.ok(fr.RUN, payload, seq=200, exec_cycles=500, reply_len=15)
    busy1 = fr.unpack_cycles(await host.ok(fr.CYCLES, seq=201))[0]
    assert busy1 > busy0
    # CYCLES (always executed) is now the last SEQ, so RUN 200 is a new command again
    again = await host.ok(fr.RUN, payload, seq=200, exec_cycles=500, reply_len=15)
    assert again == first
    busy2 = fr.unpack_cycles(await host.ok(fr.CYCLES, seq=10))[0]
    same = await host.ok(fr.RUN, payload, seq=11, exec_cycles=500, reply_len=15)
    busy3 = fr.unpack_cycles(await host.ok(fr.CYCLES, seq=12))[0]
    assert busy3 > busy2
    # retry of WRITE_PARAMS with different content but the same SEQ: not executed
    new_bias = lay["bias"] + 1000
    await host.ok(fr.WRITE_PARAMS, fr.write_params_payload(0, lay["bias"], lay["m0"], lay["shift"]),
                  seq=13)
    await host.ok(fr.WRITE_PARAMS, fr.write_params_payload(0, new_bias, lay["m0"], lay["shift"]),
                  seq=13)
    got = await host.ok(fr.RUN, payload, seq=14, exec_cycles=500, reply_len=15)
    assert got == same == reference(lay).tobytes()
    retry = await host.ok(fr.RUN, fr.run_payload(0, 3, bytes(48)), seq=14, exec_cycles=500,
                          reply_len=15)
    assert retry == got, "a retried RUN (same SEQ) must return the remembered reply"
    busy4 = fr.unpack_cycles(await host.ok(fr.CYCLES, seq=15))[0]
    assert busy4 - busy3 == fr.unpack_cycles(await host.ok(fr.CYCLES, seq=16))[1], \
        "only one RUN executed between the two CYCLES"


@cocotb.test()
async def test_garbage(dut):
    """Random bytes, truncated frames, bad CRCs, oversize LEN: then HELLO is still answered."""
    host = await start(dut)
    rnd = random.Random(6)
    timeout_ns = CFG.rx_timeout_cycles * CLOCK_NS
    for round_ in range(6):
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(20, 120)))
        if round_ % 2:
            junk += fr.SYNC + bytes([0xFF, 0xFF])         # LEN beyond max_payload
        await host.tx.send(junk)
        # a truncated frame: the receive timeout must drop it
        await host.tx.send(fr.encode(9, fr.RUN, bytes(30))[:rnd.randrange(3, 20)])
        await Timer(timeout_ns + 20 * BYTE_NS, "ns")
        host.rx.drain()   # junk may have formed a frame by chance: ignore its replies
        await Timer(200 * BYTE_NS, "ns")
        host.rx.drain()
        rec = await host.ok(fr.HELLO)
        assert fr.Hello.unpack(rec).build_id == CFG.build_id
    # a corrupted frame followed at once by a good one
    bad = bytearray(fr.encode(3, fr.HELLO))
    bad[4] ^= 0xFF
    await host.tx.send(bytes(bad))
    reply = await host.read_frame(100 * BYTE_NS)
    assert reply.is_error and reply.error()[0] == fr.ERR_CRC
    rec = await host.ok(fr.HELLO)
    assert len(rec) == 42
