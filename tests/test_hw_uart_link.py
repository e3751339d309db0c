"""UART PHY and frame codec in Amaranth's own simulator (fast unit checks; the Verilator
benches in tests/test_sim_*.py cover the integrated design)."""
import random

from amaranth import Module
from amaranth.sim import Simulator

from hw.link import FrameDecoder, FrameEncoder
from hw.uart import UARTRx, UARTTx
from sw.runtime import framing as fr

DIV = 4


def _loopback(data: bytes):
    """TX -> pin -> RX; returns (received bytes, cycles between TX start bits)."""
    m = Module()
    m.submodules.tx = tx = UARTTx(DIV)
    m.submodules.rx = rx = UARTRx(DIV)
    m.d.comb += [rx.pin.eq(tx.pin), rx.stream.ready.eq(1)]
    sim = Simulator(m)
    sim.add_clock(1e-6)
    got, starts = [], []

    async def feed(ctx):
        for b in data:
            ctx.set(tx.stream.payload, b)
            ctx.set(tx.stream.valid, 1)
            await ctx.tick().until(tx.stream.ready)
        ctx.set(tx.stream.valid, 0)

    async def watch(ctx):
        cycle, prev = 0, 1
        async for _, _, pin, valid, payload in ctx.tick().sample(tx.pin, rx.stream.valid,
                                                                rx.stream.payload):
            if prev == 1 and pin == 0 and (not starts or cycle - starts[-1] >= 10 * DIV - 1):
                starts.append(cycle)
            prev = pin
            if valid:
                got.append(payload)
            cycle += 1
            if len(got) == len(data):
                return

    sim.add_testbench(feed)
    sim.add_process(watch)
    sim.run_until(1e-6 * (len(data) + 3) * 10 * DIV * 2)
    return bytes(got), starts


def test_uart_loopback_at_line_rate():
    data = bytes(random.Random(1).randrange(256) for _ in range(40)) + b"\x00\xff\x55"
    got, starts = _loopback(data)
    assert got == data
    gaps = {b - a for a, b in zip(starts, starts[1:])}
    assert gaps == {10 * DIV}, f"TX must send back to back at 10 bits/byte, saw gaps {gaps}"


def test_encoder_matches_host_framing():
    m = Module()
    m.submodules.enc = enc = FrameEncoder()
    sim = Simulator(m)
    sim.add_clock(1e-6)
    payload = bytes(range(7)) + b"\xa5\x5a"
    out = []

    async def bench(ctx):
        ctx.set(enc.tx.ready, 1)
        ctx.set(enc.hdr.payload.length, len(payload))
        ctx.set(enc.hdr.payload.seq, 0x3C)
        ctx.set(enc.hdr.payload.cmd, 0x85)
        ctx.set(enc.hdr.valid, 1)
        await ctx.tick().until(enc.hdr.ready)
        ctx.set(enc.hdr.valid, 0)
        i = 0
        for _ in range(200):
            ctx.set(enc.payload.valid, i < len(payload))
            ctx.set(enc.payload.payload, payload[i] if i < len(payload) else 0)
            _, _, valid, data, pready = await ctx.tick().sample(enc.tx.valid, enc.tx.payload,
                                                                enc.payload.ready)
            if valid:
                out.append(data)
            if pready and i < len(payload):
                i += 1
            if len(out) == len(payload) + 10:
                break

    sim.add_testbench(bench)
    sim.run()
    assert bytes(out) == fr.encode(0x3C, 0x85, payload)


def _decode(stream: bytes, max_payload=64, timeout=50):
    m = Module()
    m.submodules.dec = dec = FrameDecoder(max_payload, timeout)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    frames, buf = [], {}

    async def bench(ctx):
        ctx.set(dec.frame.ready, 1)
        for item in stream:
            if item is None:             # a pause longer than the timeout
                ctx.set(dec.rx.valid, 0)
                await ctx.tick().repeat(timeout + 5)
                continue
            ctx.set(dec.rx.payload, item)
            ctx.set(dec.rx.valid, 1)
            await ctx.tick().until(dec.rx.ready)
        ctx.set(dec.rx.valid, 0)
        await ctx.tick().repeat(10)

    async def watch(ctx):
        async for _, _, en, addr, data, fv, info in ctx.tick().sample(
                dec.wr_en, dec.wr_addr, dec.wr_data, dec.frame.valid, dec.frame.payload):
            if en:
                buf[addr] = data
            if fv:
                n = info.length
                frames.append((info.seq, info.cmd, bool(info.crc_ok),
                               bytes(buf.get(i, 0) for i in range(n))))

    sim.add_testbench(bench)
    sim.add_process(watch)
    sim.run_until(1e-6 * (len(stream) * 3 + 400))
    return frames


def test_decoder_frames_crc_timeout_oversize():
    good1 = fr.encode(1, 0x05, b"hello")
    good2 = fr.encode(2, 0x01)
    bad = bytearray(fr.encode(3, 0x04, b"xyz"))
    bad[7] ^= 0x40
    oversize = b"\xa5\x5a" + (65).to_bytes(2, "little") + b"\x00\x00"
    truncated = fr.encode(4, 0x05, b"0123456789")[:9]
    stream = (list(b"\x00\xa5\x11") + list(good1) + list(oversize) + list(bytes(bad)) +
              list(truncated) + [None] + list(b"\xa5\xa5") + list(good2))
    frames = _decode(stream)
    assert frames == [(1, 0x05, True, b"hello"), (3, 0x04, False, b"x9z"), (2, 0x01, True, b"")]
