"""Frame decoder and encoder for docs/protocol.md.

Frame: ``A5 5A | LEN u16 | SEQ u8 | CMD u8 | PAYLOAD[LEN] | CRC-32 u32`` (little-endian), CRC-32
(zlib, ``CRC32_ETHERNET``) over LEN .. end of PAYLOAD.
"""
from amaranth import Module, Signal, Const, Cat
from amaranth.lib import wiring, stream, data
from amaranth.lib.crc.catalog import CRC32_ETHERNET
from amaranth.lib.wiring import In, Out

__all__ = ["SYNC0", "SYNC1", "FrameInfo", "ReplyHeader", "FrameDecoder", "FrameEncoder"]

SYNC0, SYNC1 = 0xA5, 0x5A

FrameInfo = data.StructLayout({"length": 16, "seq": 8, "cmd": 8, "crc_ok": 1})
ReplyHeader = data.StructLayout({"length": 16, "seq": 8, "cmd": 8})


class FrameDecoder(wiring.Component):
    """Byte stream -> payload bytes written to a buffer + one ``frame`` record per frame.

    The payload of a frame is written at byte addresses 0..LEN-1 through ``wr_*``. When the
    CRC has been checked, ``frame`` becomes valid (``crc_ok`` tells the result) and the decoder
    accepts no byte until the consumer takes it (``frame.ready``), so the buffer stays intact
    while the frame executes. A LEN above ``max_payload`` or a gap of more than ``timeout``
    cycles inside a frame drops the partial frame and the decoder hunts for SYNC0 SYNC1 again.
    """

    def __init__(self, max_payload: int, timeout: int):
        self.max_payload = max_payload
        self.timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "wr_addr": Out(range(max_payload)),
            "wr_data": Out(8),
            "wr_en": Out(1),
            "frame": Out(stream.Signature(FrameInfo)),
        })

    def elaborate(self, platform):
        from amaranth.lib.crc import Processor
        m = Module()
        m.submodules.crc = crc = Processor(CRC32_ETHERNET(8))
        info = Signal(FrameInfo)
        count = Signal(16)
        idle = Signal(range(self.timeout + 1))
        byte = self.rx.payload
        take = Signal()
        m.d.comb += [take.eq(self.rx.valid & self.rx.ready), crc.data.eq(byte),
                     self.wr_data.eq(byte), self.frame.payload.eq(info)]

        in_frame = Signal()
        with m.If(take | ~in_frame):
            m.d.sync += idle.eq(0)
        with m.Elif(idle == self.timeout):
            pass
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        timed_out = in_frame & (idle == self.timeout)

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(take & (byte == SYNC0)):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(take):
                    with m.If(byte == SYNC1):
                        m.d.comb += crc.start.eq(1)
                        m.next = "LEN0"
                    with m.Elif(byte != SYNC0):
                        m.next = "HUNT"
            for state, field, nxt in (("LEN0", info.length[:8], "LEN1"),
                                      ("LEN1", info.length[8:], "SEQ"),
                                      ("SEQ", info.seq, "CMD")):
                with m.State(state):
                    m.d.comb += [self.rx.ready.eq(1), in_frame.eq(1), crc.valid.eq(take)]
                    with m.If(timed_out):
                        m.next = "HUNT"
                    with m.Elif(take):
                        m.d.sync += field.eq(byte)
                        m.next = nxt
                        if state == "LEN1":
                            with m.If(Cat(info.length[:8], byte) > self.max_payload):
                                m.next = "HUNT"
            with m.State("CMD"):
                m.d.comb += [self.rx.ready.eq(1), in_frame.eq(1), crc.valid.eq(take)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.Elif(take):
                    m.d.sync += [info.cmd.eq(byte), count.eq(0)]
                    with m.If(info.length == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.rx.ready.eq(1), in_frame.eq(1), crc.valid.eq(take),
                             self.wr_addr.eq(count), self.wr_en.eq(take)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.Elif(take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == info.length - 1):
                        m.d.sync += count.eq(0)
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [self.rx.ready.eq(1), in_frame.eq(1), crc.valid.eq(take)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.Elif(take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == 3):
                        m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += info.crc_ok.eq(crc.match_detected)
                m.next = "PENDING"
            with m.State("PENDING"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.next = "HUNT"
        return m


class FrameEncoder(wiring.Component):
    """``hdr`` (LEN, SEQ, CMD) + LEN bytes of ``payload`` -> a framed byte stream with CRC-32."""

    def __init__(self):
        super().__init__({
            "hdr": In(stream.Signature(ReplyHeader)),
            "payload": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        from amaranth.lib.crc import Processor
        m = Module()
        m.submodules.crc = crc = Processor(CRC32_ETHERNET(8))
        hdr = Signal(ReplyHeader)
        count = Signal(16)
        sent = Signal()
        m.d.comb += [sent.eq(self.tx.valid & self.tx.ready), crc.data.eq(self.tx.payload)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.hdr.ready.eq(1)
                with m.If(self.hdr.valid):
                    m.d.sync += hdr.eq(self.hdr.payload)
                    m.d.comb += crc.start.eq(1)
                    m.next = "S0"
            steps = (("S0", Const(SYNC0, 8), "S1", False), ("S1", Const(SYNC1, 8), "LEN0", False),
                     ("LEN0", hdr.length[:8], "LEN1", True), ("LEN1", hdr.length[8:], "SEQ", True),
                     ("SEQ", hdr.seq, "CMD", True))
            for state, value, nxt, in_crc in steps:
                with m.State(state):
                    m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(value)]
                    if in_crc:
                        m.d.comb += crc.valid.eq(sent)
                    with m.If(sent):
                        m.next = nxt
            with m.State("CMD"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(hdr.cmd), crc.valid.eq(sent)]
                with m.If(sent):
                    m.d.sync += count.eq(0)
                    with m.If(hdr.length == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.tx.valid.eq(self.payload.valid),
                             self.tx.payload.eq(self.payload.payload),
                             self.payload.ready.eq(self.tx.ready), crc.valid.eq(sent)]
                with m.If(sent):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == hdr.length - 1):
                        m.d.sync += count.eq(0)
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc.crc.word_select(count[:2], 8))]
                with m.If(sent):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == 3):
                        m.next = "IDLE"
        return m
