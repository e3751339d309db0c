"""`PlatformTop(board)`: the accelerator (`hw.top.Top`) on a real board: clock, reset, UART pins."""
from __future__ import annotations

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer


class PlatformTop(Elaboratable):
    """Wraps hw.top.Top(config) with the board's clock (EHXPLLL on the ULX3S, the oscillator on
    the iCEBreaker), a reset held until the PLL locks, and the platform's `uart` resource."""

    def __init__(self, board, config=None):
        self.board = board
        self.config = config or board.accel_config()

    def elaborate(self, platform):
        from hw.top import Top
        b = self.board
        m = Module()
        if b.pll is not None:
            m.domains.sync = cd_sync = ClockDomain("sync")
            osc = platform.request(platform.default_clk, dir="-")
            locked = Signal()
            pll = b.pll
            m.submodules.pll = Instance(
                "EHXPLLL",
                p_CLKI_DIV=pll["CLKI_DIV"], p_CLKFB_DIV=pll["CLKFB_DIV"],
                p_CLKOP_DIV=pll["CLKOP_DIV"], p_CLKOP_CPHASE=pll["CLKOP_CPHASE"],
                p_CLKOP_FPHASE=0, p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
                p_OUTDIVIDER_MUXA="DIVA", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED", p_PLL_LOCK_MODE=0,
                a_FREQUENCY_PIN_CLKI=str(b.osc_hz // 1_000_000),
                a_FREQUENCY_PIN_CLKOP=str(b.clock_hz // 1_000_000),
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
                i_CLKI=osc.io, i_CLKFB=ClockSignal("sync"), i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=ClockSignal("sync"), o_LOCK=locked)
            platform.add_clock_constraint(cd_sync.clk, b.clock_hz)
            m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        # else: the platform's default clock (and its power-on reset) drives `sync`.

        m.submodules.core = core = Top(self.config)
        uart = platform.request("uart", 0)
        m.submodules.rx_sync = FFSynchronizer(uart.rx.i, core.uart_rx, init=1)
        m.d.comb += uart.tx.o.eq(core.uart_tx)
        return m
