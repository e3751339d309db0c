"""8N1 UART PHY as stream components.

``UARTRx``: 2-FF synchroniser, start-bit detection on the falling edge, every bit sampled at its
middle; a byte with a bad stop bit is dropped. A byte not taken by the next byte's end is lost
(put a FIFO behind it).

``UARTTx``: takes a byte on the same cycle the previous stop bit ends, so a continuous stream
leaves the pin at exactly line rate with no idle cycle between bytes.
"""
from amaranth import Module, Signal, Const
from amaranth.lib import wiring, stream
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx"]


class UARTRx(wiring.Component):
    """``pin`` (asynchronous line, idle high) -> ``stream`` of bytes."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError("UART divisor must be >= 4 clocks per bit")
        self.divisor = divisor
        super().__init__({"pin": In(1, init=1), "stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.pin, rx, init=1)

        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)

        with m.If(self.stream.ready):
            m.d.sync += self.stream.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # middle of the start bit
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"  # glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq((rx << 7) | (shreg >> 1)), timer.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [self.stream.payload.eq(shreg), self.stream.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"  # framing error: wait for the line to go idle
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """``stream`` of bytes -> ``pin`` (idle high), back-to-back at line rate."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError("UART divisor must be >= 4 clocks per bit")
        self.divisor = divisor
        super().__init__({"stream": In(stream.Signature(8)), "pin": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)
        timer = Signal(range(self.divisor))
        bits_left = Signal(range(11))
        busy = Signal()

        last_tick = Signal()
        m.d.comb += [
            last_tick.eq(busy & (timer == 0) & (bits_left == 1)),
            self.stream.ready.eq(~busy | last_tick),
        ]
        m.d.comb += self.pin.eq(shreg[0])

        with m.If(self.stream.valid & self.stream.ready):
            m.d.sync += [shreg.eq(Const(1 << 9, 10) | (self.stream.payload << 1)),
                         timer.eq(self.divisor - 1), bits_left.eq(10), busy.eq(1)]
        with m.Elif(busy):
            with m.If(timer == 0):
                m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), timer.eq(self.divisor - 1),
                             bits_left.eq(bits_left - 1)]
                with m.If(bits_left == 1):
                    m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
