"""The command engine: executes CRC-checked frames (docs/protocol.md) and produces replies.

Owns the request payload buffer (L byte banks, written by the frame decoder, read by the
engine byte by byte and by the core L bytes at a time), the layer slot table, the cycle
counters and the :class:`~hw.core.Core`. A frame is executed only after the decoder has
buffered it whole and checked its CRC. The SEQ and reply of the last executed command are
remembered: a good frame with the same SEQ is answered with that reply again, not executed
(HELLO and CYCLES, having no side effects, always execute; see docs/protocol.md).
"""
import enum

from amaranth import Module, Signal, Mux, Cat, Const, Array, signed
from amaranth.lib import wiring, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .core import Core, payload_rows
from .link import FrameInfo, ReplyHeader

__all__ = ["Engine", "Cmd", "Err"]


class Cmd(enum.IntEnum):
    HELLO = 0x01
    SET_LAYER = 0x02
    WRITE_WEIGHTS = 0x03
    WRITE_PARAMS = 0x04
    RUN = 0x05
    CYCLES = 0x06
    ERROR = 0xFF


class Err(enum.IntEnum):
    CRC = 1
    UNKNOWN_CMD = 2
    BAD_LENGTH = 3
    BAD_SLOT = 4
    OUT_OF_RANGE = 5


class _Src(enum.IntEnum):   # where a reply's payload bytes come from
    NONE = 0
    HELLO = 1
    CYCLES = 2
    OUTPUT = 3
    ERROR = 4


PARAM_BYTES = 9


class Engine(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        super().__init__({
            "frame": In(stream.Signature(FrameInfo)),
            "pw_en": In(1), "pw_addr": In(range(cfg.max_payload)), "pw_data": In(8),
            "reply_hdr": Out(stream.Signature(ReplyHeader)),
            "reply_data": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        L, P, W = cfg.L, cfg.P, cfg.word_bytes
        lg_l, lg_w = L.bit_length() - 1, W.bit_length() - 1
        m = Module()
        m.submodules.core = core = Core(cfg)

        # ---- payload banks
        rows = payload_rows(cfg)
        rd_ptr = Signal(16)
        rd_sel = Signal(max(1, lg_l))
        byte = Signal(8)
        bank_data = []
        run_mode = Signal()
        for b in range(L):
            bank = Memory(shape=8, depth=rows, init=[])
            m.submodules[f"bank{b}"] = bank
            wp, rp = bank.write_port(), bank.read_port()
            m.d.comb += [wp.en.eq(self.pw_en & ((self.pw_addr & (L - 1)) == b)),
                         wp.addr.eq(self.pw_addr >> lg_l), wp.data.eq(self.pw_data),
                         rp.addr.eq(Mux(run_mode, core.act_row[b], rd_ptr >> lg_l)),
                         core.act_data[b].eq(rp.data)]
            bank_data.append(rp.data)
        m.d.sync += rd_sel.eq(rd_ptr[:lg_l] if lg_l else 0)
        m.d.comb += byte.eq(Array(bank_data)[rd_sel])

        # ---- the frame being executed and its 12-byte header
        f_len, f_seq, f_cmd = Signal(16), Signal(8), Signal(8)
        hdr = Signal(96)
        hb = [hdr[8 * i:8 * i + 8] for i in range(12)]
        hcnt = Signal(4)

        # ---- slot table
        S = cfg.slots
        sl_valid = Array(Signal(name=f"slot{i}_valid") for i in range(S))
        sl_K = Array(Signal(16, name=f"slot{i}_K") for i in range(S))
        sl_O = Array(Signal(16, name=f"slot{i}_O") for i in range(S))
        sl_wbase = Array(Signal(range(cfg.weight_words), name=f"slot{i}_wbase") for i in range(S))
        sl_pbase = Array(Signal(16, name=f"slot{i}_pbase") for i in range(S))
        sl_zp = Array(Signal(signed(8), name=f"slot{i}_zp") for i in range(S))

        # ---- counters
        busy_total = Signal(64)
        run_cycles, last_run = Signal(32), Signal(32)
        snap = Signal(96)
        with m.If(core.busy):
            m.d.sync += [busy_total.eq(busy_total + 1), run_cycles.eq(run_cycles + 1)]

        # ---- replies: the one being sent and the remembered one
        cur_cmd, cur_seq, cur_len = Signal(8), Signal(8), Signal(16)
        cur_src, cur_code, cur_rcmd = Signal(3), Signal(8), Signal(8)
        last_cmd, last_seq, last_len = Signal(8), Signal(8), Signal(16)
        last_src, last_code, last_rcmd = Signal(3), Signal(8), Signal(8)
        have_last = Signal()

        def reply(src, length, cmd, code=0, remember=True):
            stmts = [cur_src.eq(src), cur_len.eq(length), cur_cmd.eq(cmd), cur_seq.eq(f_seq),
                     cur_code.eq(code), cur_rcmd.eq(f_cmd)]
            if remember:
                stmts += [last_src.eq(src), last_len.eq(length), last_cmd.eq(cmd),
                          last_seq.eq(f_seq), last_code.eq(code), last_rcmd.eq(f_cmd),
                          have_last.eq(1)]
            m.d.sync += stmts
            m.d.comb += self.frame.ready.eq(1)
            m.next = "SEND_HDR"

        def ok(src=_Src.NONE, length=0):
            reply(src, length, f_cmd | 0x80)

        def error(code):
            reply(_Src.ERROR, 2, Cmd.ERROR, code)

        # ---- scratch for validation loops and writes
        acc1, acc2 = Signal(32), Signal(32)     # running products / remainders
        loop = Signal(16)
        run_slot = Signal(range(S))
        waddr = Signal(34)
        paddr = Signal(17)
        word = Signal(8 * W)
        rec = Signal(8 * PARAM_BYTES)
        bcnt = Signal(16)
        remaining = Signal(16)

        cur_K, cur_O = sl_K[run_slot], sl_O[run_slot]
        m.d.comb += [core.K.eq(cur_K), core.O.eq(cur_O), core.tokens.eq(Cat(hb[1], hb[2])),
                     core.wbase.eq(sl_wbase[run_slot]), core.pbase.eq(sl_pbase[run_slot]),
                     core.zp.eq(sl_zp[run_slot])]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += run_mode.eq(0)
                with m.If(self.frame.valid):
                    info = self.frame.payload
                    m.d.sync += [f_len.eq(info.length), f_seq.eq(info.seq), f_cmd.eq(info.cmd),
                                 rd_ptr.eq(0), hcnt.eq(0)]
                    with m.If(~info.crc_ok):
                        m.d.sync += [cur_src.eq(_Src.ERROR), cur_len.eq(2), cur_cmd.eq(Cmd.ERROR),
                                     cur_seq.eq(info.seq), cur_code.eq(Err.CRC),
                                     cur_rcmd.eq(info.cmd)]
                        m.d.comb += self.frame.ready.eq(1)
                        m.next = "SEND_HDR"
                    with m.Elif(have_last & (info.seq == last_seq) &
                                (info.cmd != Cmd.HELLO) & (info.cmd != Cmd.CYCLES)):
                        m.d.sync += [cur_src.eq(last_src), cur_len.eq(last_len),
                                     cur_cmd.eq(last_cmd), cur_seq.eq(last_seq),
                                     cur_code.eq(last_code), cur_rcmd.eq(last_rcmd)]
                        m.d.comb += self.frame.ready.eq(1)
                        m.next = "SEND_HDR"
                    with m.Else():
                        m.next = "HDR"

            with m.State("HDR"):
                # read payload bytes 0..11 (whatever lies past LEN is ignored by DISPATCH)
                m.d.sync += [rd_ptr.eq(rd_ptr + 1), hcnt.eq(hcnt + 1)]
                with m.If(hcnt != 0):
                    m.d.sync += hdr.eq(Cat(hdr[8:], byte))
                with m.If(hcnt == 12):
                    m.next = "DISPATCH"

            with m.State("DISPATCH"):
                with m.Switch(f_cmd):
                    with m.Case(Cmd.HELLO):
                        with m.If(f_len != 0):
                            error(Err.BAD_LENGTH)
                        with m.Else():
                            ok(_Src.HELLO, 42)
                    with m.Case(Cmd.CYCLES):
                        with m.If(f_len != 0):
                            error(Err.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += snap.eq(Cat(busy_total, last_run))
                            ok(_Src.CYCLES, 12)
                    with m.Case(Cmd.SET_LAYER):
                        K, O = Cat(hb[1], hb[2]), Cat(hb[3], hb[4])
                        with m.If(f_len != 12):
                            error(Err.BAD_LENGTH)
                        with m.Elif(hb[0] >= S):
                            error(Err.BAD_SLOT)
                        with m.Elif((K == 0) | (K > cfg.max_k) | (O == 0) | (O > cfg.max_o)):
                            error(Err.OUT_OF_RANGE)
                        with m.Else():
                            # words = ceil(O/P) * ceil(K/L), by repeated addition
                            m.d.sync += [acc1.eq(0), loop.eq((O + P - 1) >> (P.bit_length() - 1))]
                            m.next = "SL_MUL"
                    with m.Case(Cmd.WRITE_WEIGHTS):
                        n_bytes = f_len - 4
                        with m.If((f_len < 4 + W) | (n_bytes[:lg_w] != 0 if lg_w else Const(0))):
                            error(Err.BAD_LENGTH)
                        with m.Elif(Cat(hb[0], hb[1], hb[2], hb[3]) + (n_bytes >> lg_w)
                                    > cfg.weight_words):
                            error(Err.OUT_OF_RANGE)
                        with m.Else():
                            m.d.sync += [waddr.eq(Cat(hb[0], hb[1], hb[2], hb[3])), rd_ptr.eq(4),
                                         bcnt.eq(0), remaining.eq(n_bytes)]
                            m.next = "WW_A"
                    with m.Case(Cmd.WRITE_PARAMS):
                        with m.If(f_len < 2 + PARAM_BYTES):
                            error(Err.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [acc1.eq(f_len - 2), acc2.eq(0)]
                            m.next = "WP_DIV"
                    with m.Case(Cmd.RUN):
                        tokens = Cat(hb[1], hb[2])
                        m.d.sync += run_slot.eq(hb[0])
                        with m.If(f_len < 3):
                            error(Err.BAD_LENGTH)
                        with m.Elif((hb[0] >= S) | ~sl_valid[hb[0]]):
                            error(Err.BAD_SLOT)
                        with m.Elif((tokens == 0) | (tokens > cfg.max_tokens)):
                            error(Err.OUT_OF_RANGE)
                        with m.Else():
                            m.d.sync += [acc1.eq(0), acc2.eq(0), loop.eq(tokens)]
                            m.next = "RUN_MUL"
                    with m.Default():
                        error(Err.UNKNOWN_CMD)

            with m.State("SL_MUL"):
                K = Cat(hb[1], hb[2])
                with m.If(loop != 0):
                    m.d.sync += [acc1.eq(acc1 + ((K + L - 1) >> lg_l)), loop.eq(loop - 1)]
                with m.Else():
                    wbase, pbase, O = Cat(hb[5], hb[6], hb[7], hb[8]), Cat(hb[9], hb[10]), Cat(hb[3], hb[4])
                    with m.If((wbase + acc1 > cfg.weight_words) | (pbase + O > cfg.param_channels)):
                        error(Err.OUT_OF_RANGE)
                    with m.Else():
                        slot = hb[0]
                        m.d.sync += [sl_valid[slot].eq(1), sl_K[slot].eq(K), sl_O[slot].eq(O),
                                     sl_wbase[slot].eq(wbase), sl_pbase[slot].eq(pbase),
                                     sl_zp[slot].eq(hb[11])]
                        ok()

            with m.State("WW_A"):
                m.next = "WW_D"
            with m.State("WW_D"):
                new_word = Cat(word[8:], byte)
                m.d.sync += [word.eq(new_word), bcnt.eq(bcnt + 1), rd_ptr.eq(rd_ptr + 1),
                             remaining.eq(remaining - 1)]
                m.next = "WW_A"
                with m.If(bcnt[:lg_w] == W - 1 if lg_w else Const(1)):
                    m.d.comb += [core.w_en.eq(1), core.w_addr.eq(waddr), core.w_data.eq(new_word)]
                    m.d.sync += waddr.eq(waddr + 1)
                with m.If(remaining == 1):
                    ok()

            with m.State("WP_DIV"):
                with m.If(acc1 >= PARAM_BYTES):
                    m.d.sync += [acc1.eq(acc1 - PARAM_BYTES), acc2.eq(acc2 + 1)]
                with m.Elif(acc1 != 0):
                    error(Err.BAD_LENGTH)
                with m.Elif(Cat(hb[0], hb[1]) + acc2 > cfg.param_channels):
                    error(Err.OUT_OF_RANGE)
                with m.Else():
                    m.d.sync += [paddr.eq(Cat(hb[0], hb[1])), rd_ptr.eq(2), bcnt.eq(0),
                                 remaining.eq(f_len - 2)]
                    m.next = "WP_A"
            with m.State("WP_A"):
                m.next = "WP_D"
            with m.State("WP_D"):
                new_rec = Cat(rec[8:], byte)
                m.d.sync += [rec.eq(new_rec), bcnt.eq(bcnt + 1), rd_ptr.eq(rd_ptr + 1),
                             remaining.eq(remaining - 1)]
                m.next = "WP_A"
                with m.If(bcnt == PARAM_BYTES - 1):
                    m.d.comb += [core.p_en.eq(1), core.p_addr.eq(paddr), core.p_data.eq(new_rec)]
                    m.d.sync += [paddr.eq(paddr + 1), bcnt.eq(0)]
                with m.If(remaining == 1):
                    ok()

            with m.State("RUN_MUL"):
                with m.If(loop != 0):
                    m.d.sync += [acc1.eq(acc1 + cur_K), acc2.eq(acc2 + cur_O), loop.eq(loop - 1)]
                with m.Elif(f_len != 3 + acc1):
                    error(Err.BAD_LENGTH)
                with m.Elif(acc2 > cfg.out_bytes):
                    error(Err.OUT_OF_RANGE)
                with m.Else():
                    m.d.comb += core.start.eq(1)
                    m.d.sync += run_cycles.eq(0)
                    m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                m.d.comb += run_mode.eq(1)
                with m.If(~core.busy):
                    m.d.sync += last_run.eq(run_cycles)
                    ok(_Src.OUTPUT, acc2)

            # ---- sending the reply in cur_*
            send_i = Signal(16)
            with m.State("SEND_HDR"):
                m.d.comb += [self.reply_hdr.valid.eq(1), self.reply_hdr.payload.length.eq(cur_len),
                             self.reply_hdr.payload.seq.eq(cur_seq),
                             self.reply_hdr.payload.cmd.eq(cur_cmd)]
                with m.If(self.reply_hdr.ready):
                    m.d.sync += send_i.eq(0)
                    m.next = "SEND_CHECK"
            with m.State("SEND_CHECK"):
                with m.If(send_i == cur_len):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "SEND_DATA"
            m.submodules.hello_rom = rom = Memory(shape=8, depth=42, init=list(cfg.hello_record()))
            rom_rd = rom.read_port()
            m.d.comb += [rom_rd.addr.eq(send_i), core.o_addr.eq(send_i)]
            with m.State("SEND_DATA"):
                src_byte = Signal(8)
                with m.Switch(cur_src):
                    with m.Case(_Src.HELLO):
                        m.d.comb += src_byte.eq(rom_rd.data)
                    with m.Case(_Src.CYCLES):
                        m.d.comb += src_byte.eq(snap.word_select(send_i[:4], 8))
                    with m.Case(_Src.OUTPUT):
                        m.d.comb += src_byte.eq(core.o_data)
                    with m.Default():
                        m.d.comb += src_byte.eq(Mux(send_i == 0, cur_code, cur_rcmd))
                m.d.comb += [self.reply_data.valid.eq(1), self.reply_data.payload.eq(src_byte)]
                with m.If(self.reply_data.ready):
                    m.d.sync += send_i.eq(send_i + 1)
                    m.next = "SEND_CHECK"
        return m
