"""cocotb bus-functional models: a UART driver for ``uart_rx`` and a monitor of ``uart_tx``."""
from __future__ import annotations

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, Timer, with_timeout

CLOCK_NS = 10


class UartDriver:
    """Sends bytes on a pin, 8N1, ``divisor`` clocks per bit."""

    def __init__(self, pin, divisor: int):
        self.pin, self.bit_ns = pin, divisor * CLOCK_NS
        pin.value = 1

    async def send(self, data: bytes, gap_bits: int = 0):
        for b in data:
            for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                self.pin.value = bit
                await Timer(self.bit_ns, "ns")
            if gap_bits:
                await Timer(gap_bits * self.bit_ns, "ns")


class UartMonitor:
    """Receives bytes from a pin into ``self.bytes`` (a Queue); flags framing errors."""

    def __init__(self, pin, divisor: int):
        self.pin, self.bit_ns = pin, divisor * CLOCK_NS
        self.bytes: Queue[int] = Queue()
        self.framing_errors = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self.pin)
            await Timer(self.bit_ns // 2, "ns")
            if int(self.pin.value) != 0:
                continue
            value = 0
            for i in range(8):
                await Timer(self.bit_ns, "ns")
                value |= int(self.pin.value) << i
            await Timer(self.bit_ns, "ns")
            if int(self.pin.value) != 1:
                self.framing_errors += 1
            self.bytes.put_nowait(value)

    async def read(self, n: int, timeout_ns: int) -> bytes:
        out = bytearray()
        for _ in range(n):
            out.append(await with_timeout(self.bytes.get(), timeout_ns, "ns"))
        return bytes(out)

    def drain(self) -> bytes:
        out = bytearray()
        while not self.bytes.empty():
            out.append(self.bytes.get_nowait())
        return bytes(out)
