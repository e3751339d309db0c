"""The ternary MAC array: P output channels x L input lanes per cycle, no multipliers.

Each product is +x, -x or 0 (a 2-bit trit selects it), an adder tree per output channel sums
the L products, and a per-channel accumulator adds the chunks of one output group. Pipeline:

  cycle 0: ``weights`` and ``x`` valid (memory outputs), ``valid``/``first``/``last``/``tag``
  cycle 1: registered adder-tree sums
  cycle 2: ``result`` (P sums of K products) + ``result_tag`` valid for one cycle after ``last``
"""
from amaranth import Module, Signal, Mux, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

__all__ = ["TernaryMACArray", "trit_products"]


def trit_products(m, trit_bits, x):
    """t*x for a 2-bit trit (01 = +1, 11 = -1, 00/10 = 0) and an int8 x, as a 9-bit signed value."""
    p = Signal(signed(9))
    x9 = Signal(signed(9))
    m.d.comb += x9.eq(x)
    with m.Switch(trit_bits):
        with m.Case(0b01):
            m.d.comb += p.eq(x9)
        with m.Case(0b11):
            m.d.comb += p.eq(-x9)
        with m.Default():
            m.d.comb += p.eq(0)
    return p


def adder_tree(m, values, name):
    """Balanced binary adder tree (combinational); widths grow one bit per level."""
    level = 0
    while len(values) > 1:
        nxt = []
        for i in range(0, len(values) - 1, 2):
            s = Signal(signed(len(values[i]) + 1), name=f"{name}_l{level}_{i // 2}")
            m.d.comb += s.eq(values[i] + values[i + 1])
            nxt.append(s)
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
        level += 1
    return values[0]


class TernaryMACArray(wiring.Component):
    """P x L ternary multiply-accumulate array.

    ``weights``: P*L trits, 2 bits each, trit (p, l) in bits 2*(p*L + l) .. +1 (the protocol's
    weight word). ``x``: L int8 activations. ``first`` starts a new accumulation, ``last`` ends
    it and presents the P sums on ``result`` with ``result_valid`` two cycles later.
    """

    def __init__(self, P: int, L: int, sum_bits: int, tag_width: int = 1):
        self.P, self.L, self.sum_bits = P, L, sum_bits
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1), "tag": In(tag_width),
            "weights": In(2 * P * L),
            "x": In(data.ArrayLayout(signed(8), L)),
            "result_valid": Out(1), "result_tag": Out(tag_width),
            "result": Out(data.ArrayLayout(signed(sum_bits), P)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P, L = self.P, self.L
        sums = [Signal(signed(8 + 1 + (L - 1).bit_length()), name=f"sum{p}") for p in range(P)]
        s_valid, s_first, s_last = Signal(), Signal(), Signal()
        s_tag = Signal.like(self.tag)
        for p in range(P):
            prods = [trit_products(m, self.weights[2 * (p * L + l):2 * (p * L + l) + 2], self.x[l])
                     for l in range(L)]
            m.d.sync += sums[p].eq(adder_tree(m, prods, f"tree{p}"))
        m.d.sync += [s_valid.eq(self.valid), s_first.eq(self.first), s_last.eq(self.last),
                     s_tag.eq(self.tag)]

        acc = [Signal(signed(self.sum_bits), name=f"acc{p}") for p in range(P)]
        m.d.sync += self.result_valid.eq(s_valid & s_last)
        with m.If(s_valid):
            m.d.sync += self.result_tag.eq(s_tag)
            for p in range(P):
                nxt = Mux(s_first, sums[p], acc[p] + sums[p])
                m.d.sync += acc[p].eq(nxt)
                with m.If(s_last):
                    m.d.sync += self.result[p].eq(nxt)
        m.d.comb += self.busy.eq(s_valid | self.result_valid)
        return m
