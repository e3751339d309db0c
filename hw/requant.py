"""The requantizer, bit-exact with ``sw.ref.ops.requantize``.

    a = acc + bias                        (exact, acc_bits wide: no int32 wrap)
    r = 31 - shift                        (shift clamped to [-31, 30], so r in [1, 62])
    y = clamp(zp + sign(a) * ((|a| * m0 + 2^(r-1)) >> r), -128, 127)

The rounding uses (p + 2^(r-1)) >> r == ((p >> (r-1)) + 1) >> 1, so no variable-position
addend is needed. Five pipeline stages: add bias / magnitude; four 17-bit partial products
(the only multipliers of the design: one DSP each); their sum; the shift; round + zero point +
clamp on 10 bits (a larger magnitude saturates). One result per cycle.
"""
from amaranth import Module, Signal, Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requantizer", "LATENCY"]

LATENCY = 5


class Requantizer(wiring.Component):
    """Pipelined int -> int8 requantizer; ``out_*`` follow ``in_*`` by ``LATENCY`` cycles."""

    def __init__(self, sum_bits: int, tag_width: int = 1):
        self.sum_bits = sum_bits
        self.acc_bits = max(32, sum_bits) + 1
        super().__init__({
            "valid": In(1), "acc": In(signed(sum_bits)), "bias": In(signed(32)),
            "m0": In(signed(32)), "shift": In(signed(8)), "zp": In(signed(8)),
            "tag": In(tag_width),
            "out_valid": Out(1), "out": Out(signed(8)), "out_tag": Out(tag_width),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ab = self.acc_bits
        # stage 1: bias, sign, magnitude, shift amount
        v1, neg1 = Signal(), Signal()
        mag1 = Signal(unsigned(ab))
        m01 = Signal(unsigned(31))
        r1 = Signal(range(63))            # r - 1
        zp1, zp2, zp3 = (Signal(signed(8), name=f"zp{i}") for i in (1, 2, 3))
        tag1, tag2, tag3 = (Signal.like(self.tag, name=f"tag{i}") for i in (1, 2, 3))
        a = Signal(signed(ab))
        sh = Signal(signed(8))
        m.d.comb += [
            a.eq(self.acc + self.bias),
            sh.eq(Mux(self.shift > 30, 30, Mux(self.shift < -31, -31, self.shift))),
        ]
        m.d.sync += [v1.eq(self.valid), neg1.eq(a < 0), mag1.eq(Mux(a < 0, -a, a)),
                     m01.eq(Mux(self.m0 < 0, 0, self.m0[:31])), r1.eq(30 - sh),
                     zp1.eq(self.zp), tag1.eq(self.tag)]
        # stage 2: four partial products of at most 17 x 17 bits, one DSP each, registered
        assert ab <= 34
        v2, neg2 = Signal(), Signal()
        r2 = Signal(range(63))
        parts = {}
        for hm, (m_lo, m_hi) in (("l", (0, 17)), ("h", (17, ab))):
            for hc, (c_lo, c_hi) in (("l", (0, 17)), ("h", (17, 31))):
                parts[hm + hc] = Signal(unsigned((m_hi - m_lo) + (c_hi - c_lo)), name=f"pp_{hm}{hc}")
                m.d.sync += parts[hm + hc].eq(mag1[m_lo:m_hi] * m01[c_lo:c_hi])
        m.d.sync += [v2.eq(v1), neg2.eq(neg1), r2.eq(r1), zp2.eq(zp1), tag2.eq(tag1)]
        # stage 3: sum of the partial products = |a| * m0
        v3, neg3 = Signal(), Signal()
        r3 = Signal(range(63))
        prod3 = Signal(unsigned(ab + 31))
        m.d.sync += [v3.eq(v2), neg3.eq(neg2), r3.eq(r2), zp3.eq(zp2), tag3.eq(tag2),
                     prod3.eq(parts["ll"] + ((parts["lh"] + parts["hl"]) << 17) +
                              (parts["hh"] << 34))]
        # stage 4: shift by r-1 (keeps the rounding bit)
        v4, neg4 = Signal(), Signal()
        zp4 = Signal(signed(8))
        tag4 = Signal.like(self.tag)
        q4 = Signal(unsigned(ab + 31))
        m.d.sync += [v4.eq(v3), neg4.eq(neg3), q4.eq(prod3 >> r3), zp4.eq(zp3), tag4.eq(tag3)]
        # stage 5: round, sign, zero point, clamp. q >= 1024 means |result| >= 512, which
        # saturates whatever the zero point, so only 10 bits go through the adders.
        big = Signal()
        mag = Signal(10)
        y = Signal(signed(12))
        m.d.comb += [big.eq(q4[10:] != 0), mag.eq((q4[:10] + 1) >> 1),
                     y.eq(zp4 + Mux(neg4, -mag, mag))]
        m.d.sync += [self.out_valid.eq(v4), self.out_tag.eq(tag4),
                     self.out.eq(Mux(big, Mux(neg4, -128, 127),
                                     Mux(y > 127, 127, Mux(y < -128, -128, y))))]
        m.d.comb += self.busy.eq(v1 | v2 | v3 | v4 | self.out_valid)
        return m
