"""The compute core: weight / parameter / output memories, the RUN sequencer, the MAC array and
the requantizer.

A RUN walks ``for token t: for output group g (P channels): for input chunk c (L inputs)``,
issuing one weight word and L activations per cycle. The final chunk of a group hands the P
sums to a serializer that feeds the (single, pipelined) requantizer one channel per cycle, so a
group occupies ``max(ceil(K/L), P)`` cycles: the sequencer stalls a group's final chunk until
the serializer is free. See sw/cycle_model.py for the resulting count.

Activations are read straight from the request payload buffer, which is split into L byte
banks (byte i in bank i % L, row i // L), so any L consecutive bytes are one read of every bank
plus a rotation. Lanes past K read whatever follows; their trits are 0 by protocol.
"""
from amaranth import Module, Signal, Cat, Shape, signed
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .mac import TernaryMACArray
from .requant import Requantizer

__all__ = ["Core", "ParamRecord", "ACT_BASE"]

ParamRecord = data.StructLayout({"bias": signed(32), "m0": signed(32), "shift": signed(8)})
ACT_BASE = 3  # activations start after the RUN payload header (slot u8, tokens u16)


def payload_rows(cfg: AccelConfig) -> int:
    return -(-cfg.max_payload // cfg.L) + 1


class Core(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        rows = payload_rows(cfg)
        super().__init__({
            # RUN command (sampled when start is high)
            "start": In(1), "K": In(16), "O": In(16), "tokens": In(16),
            "wbase": In(range(cfg.weight_words)), "pbase": In(16), "zp": In(signed(8)),
            "busy": Out(1),
            # memory writes from the command engine
            "w_en": In(1), "w_addr": In(range(cfg.weight_words)), "w_data": In(cfg.word_bits),
            "p_en": In(1), "p_addr": In(range(cfg.param_channels)), "p_data": In(ParamRecord),
            # output buffer read (one cycle latency)
            "o_addr": In(range(cfg.out_bytes)), "o_data": Out(8),
            # payload bank reads (one cycle latency)
            "act_row": Out(data.ArrayLayout(range(rows), cfg.L)),
            "act_data": In(data.ArrayLayout(8, cfg.L)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        P, L = cfg.P, cfg.L
        lg_l = L.bit_length() - 1
        m = Module()

        m.submodules.wmem = wmem = Memory(shape=cfg.word_bits, depth=cfg.weight_words, init=[])
        m.submodules.pmem = pmem = Memory(shape=ParamRecord, depth=cfg.param_channels, init=[])
        m.submodules.omem = omem = Memory(shape=8, depth=cfg.out_bytes, init=[])
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        p_wr, p_rd = pmem.write_port(), pmem.read_port()
        o_wr, o_rd = omem.write_port(), omem.read_port()
        m.d.comb += [w_wr.en.eq(self.w_en), w_wr.addr.eq(self.w_addr), w_wr.data.eq(self.w_data),
                     p_wr.en.eq(self.p_en), p_wr.addr.eq(self.p_addr), p_wr.data.eq(self.p_data),
                     o_rd.addr.eq(self.o_addr), self.o_data.eq(o_rd.data)]

        out_w = Shape.cast(range(cfg.out_bytes + P))     # output byte address
        ch_w = Shape.cast(range(cfg.max_o + P))          # channel index within the layer
        tag_layout = data.StructLayout({"out": out_w, "ch": ch_w})
        m.submodules.mac = mac = TernaryMACArray(P, L, cfg.sum_bits, tag_layout.size)
        m.submodules.rq = rq = Requantizer(cfg.sum_bits, out_w.width)

        # ---- latched RUN parameters
        K, O = Signal(16), Signal(16)
        Cm1, Gm1, Tm1 = Signal(16), Signal(16), Signal(16)   # chunks-1, groups-1, tokens-1
        wbase, pbase, zp = Signal.like(self.wbase), Signal(16), Signal(signed(8))

        # ---- sequencer state
        t, g, c = Signal(16), Signal(16), Signal(16)
        w_addr = Signal.like(self.wbase)
        a = Signal(range(cfg.max_payload + 2 * L + 4))        # byte offset of the chunk
        tok_base = Signal.like(a)
        out_tok, out_base = Signal(out_w), Signal(out_w)
        ch_base = Signal(ch_w)
        since = Signal(range(P + 1), init=P)
        running = Signal()

        final = Signal()
        issue = Signal()
        m.d.comb += [final.eq(c == Cm1), issue.eq(running & ~(final & (since < P)))]

        # memory addresses for this cycle
        a_row, a_lo = a[lg_l:], a[:lg_l]
        for b in range(L):
            m.d.comb += self.act_row[b].eq(a_row + (b < a_lo))
        m.d.comb += w_rd.addr.eq(w_addr)

        # MAC inputs: controls delayed one cycle to meet the memory data
        lo_d = Signal(max(1, lg_l))
        tag_d = Signal(tag_layout)
        m.d.sync += [mac.valid.eq(issue), mac.first.eq(c == 0), mac.last.eq(final),
                     lo_d.eq(a_lo), tag_d.out.eq(out_base), tag_d.ch.eq(ch_base)]
        m.d.comb += [mac.weights.eq(w_rd.data), mac.tag.eq(tag_d)]
        for l in range(L):
            sel = Signal(max(1, lg_l), name=f"lane_sel{l}")
            m.d.comb += sel.eq(lo_d + l)
            m.d.comb += mac.x[l].eq(self.act_data.as_value().word_select(sel if lg_l else 0, 8))

        with m.If(self.start & ~running):
            m.d.sync += [
                K.eq(self.K), O.eq(self.O), wbase.eq(self.wbase),
                pbase.eq(self.pbase), zp.eq(self.zp),
                # ceil(n/d) - 1 == (n-1) // d for n >= 1 (the engine never starts with 0)
                Cm1.eq((self.K - 1) >> lg_l), Gm1.eq((self.O - 1) >> (P.bit_length() - 1)),
                Tm1.eq(self.tokens - 1),
                t.eq(0), g.eq(0), c.eq(0), w_addr.eq(self.wbase), a.eq(ACT_BASE),
                tok_base.eq(ACT_BASE), out_tok.eq(0), out_base.eq(0), ch_base.eq(0),
                since.eq(P), running.eq(1),
            ]
        with m.Elif(running):
            with m.If(issue & final):
                m.d.sync += [since.eq(1), c.eq(0)]
            with m.Elif(since < P):
                m.d.sync += since.eq(since + 1)
            with m.If(issue):
                with m.If(final):
                    with m.If(g == Gm1):
                        m.d.sync += [g.eq(0), t.eq(t + 1), tok_base.eq(tok_base + K),
                                     a.eq(tok_base + K), w_addr.eq(wbase), out_tok.eq(out_tok + O),
                                     out_base.eq(out_tok + O), ch_base.eq(0)]
                        with m.If(t == Tm1):
                            m.d.sync += running.eq(0)
                    with m.Else():
                        m.d.sync += [g.eq(g + 1), a.eq(tok_base), w_addr.eq(w_addr + 1),
                                     out_base.eq(out_base + P), ch_base.eq(ch_base + P)]
                with m.Else():
                    m.d.sync += [c.eq(c + 1), a.eq(a + L), w_addr.eq(w_addr + 1)]

        # ---- serializer: P sums -> one channel per cycle into the requantizer
        sreg = Signal(data.ArrayLayout(signed(cfg.sum_bits), P))
        cnt = Signal(range(P + 1))
        idx = Signal(range(P + 1))
        s_out, s_ch = Signal(out_w), Signal(ch_w)
        emit = Signal()
        o_ch = Signal(ch_w)
        m.d.comb += [emit.eq(cnt != 0), o_ch.eq(s_ch + idx),
                     p_rd.addr.eq(pbase + o_ch)]
        with m.If(emit):
            m.d.sync += [cnt.eq(cnt - 1), idx.eq(idx + 1),
                         sreg.eq(Cat(sreg.as_value()[cfg.sum_bits:],
                                     Signal(cfg.sum_bits)))]
        result_tag = data.View(tag_layout, mac.result_tag)
        with m.If(mac.result_valid):
            m.d.sync += [sreg.eq(mac.result), cnt.eq(P), idx.eq(0),
                         s_out.eq(result_tag.out), s_ch.eq(result_tag.ch)]
        # one register stage while the parameter memory is read
        rq_valid, rq_acc, rq_addr = Signal(), Signal(signed(cfg.sum_bits)), Signal(out_w)
        m.d.sync += [rq_valid.eq(emit & (o_ch < O)), rq_acc.eq(sreg[0]), rq_addr.eq(s_out + idx)]
        m.d.comb += [rq.valid.eq(rq_valid), rq.acc.eq(rq_acc), rq.bias.eq(p_rd.data.bias),
                     rq.m0.eq(p_rd.data.m0), rq.shift.eq(p_rd.data.shift), rq.zp.eq(zp),
                     rq.tag.eq(rq_addr)]
        m.d.comb += [o_wr.en.eq(rq.out_valid), o_wr.addr.eq(rq.out_tag), o_wr.data.eq(rq.out)]

        m.d.comb += self.busy.eq(running | mac.valid | mac.busy | emit | rq_valid | rq.busy)
        return m
