"""`Board`: one FPGA target's description (platform, clock, UART, accelerator sizes)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


class UnknownBoardError(ValueError):
    """A board name that is not in the registry."""


# The simulated board runs the same design with a short bit period so that a Verilator
# model (a few M cycles/s) still moves ~150 kB/s.  Reported in HELLO as baud = clock / 4.
SIM_CLKS_PER_BIT = 4
# Receive timeout of the simulated board, in simulated microseconds.  The harness stops the
# clock while a host frame is incomplete and no byte is waiting (docs/boards.md), so this only
# has to cover the harness' own stall limit; it is kept generous anyway.
SIM_RX_TIMEOUT_US = 2000


@dataclass(frozen=True)
class Board:
    """A target board.

    `accel` holds the `hw.config.AccelConfig` fields that size the accelerator for this FPGA
    (P, L, slots, weight_words, param_channels, max_k, max_o, max_tokens, max_payload);
    `clock_hz`, `baud` and `rx_timeout_us` are filled in from the board's own fields.
    """
    name: str
    description: str
    platform_path: str              # "module:Class" of the amaranth-boards platform
    family: str                     # "ecp5" or "ice40"
    device: str
    osc_hz: int                     # the board oscillator
    clock_hz: int                   # the design's sync clock (from the PLL, or the oscillator)
    baud: int                       # must divide clock_hz exactly
    pll: dict | None                # EHXPLLL divider settings, None = run from the oscillator
    accel: dict
    usb_ids: tuple[tuple[int, int], ...] = ()    # (vid, pid) of the board's USB-UART
    rx_timeout_us: int = 1000
    loader_board: str = ""          # openFPGALoader's -b name
    resources: dict = field(default_factory=dict)  # block RAM / DSP / LUT counts of the FPGA

    def __post_init__(self):
        if self.clock_hz % self.baud:
            raise ValueError(f"{self.name}: baud {self.baud} does not divide clock {self.clock_hz}")

    @property
    def clks_per_bit(self) -> int:
        return self.clock_hz // self.baud

    def platform(self, **kwargs):
        """A fresh amaranth-boards platform instance for this board."""
        module, cls = self.platform_path.split(":")
        return getattr(importlib.import_module(module), cls)(**kwargs)

    def config_kwargs(self, *, sim: bool = False) -> dict:
        """AccelConfig keyword arguments for the board (or its simulated twin)."""
        kw = dict(self.accel, clock_hz=self.clock_hz, baud=self.baud,
                  rx_timeout_us=self.rx_timeout_us)
        if sim:
            kw.update(baud=self.clock_hz // SIM_CLKS_PER_BIT, rx_timeout_us=SIM_RX_TIMEOUT_US)
        return kw

    def accel_config(self, *, sim: bool = False):
        """The board's `hw.config.AccelConfig` (sim=True: the simulated board's, same sizes,
        baud = clock / SIM_CLKS_PER_BIT)."""
        from hw.config import AccelConfig
        import inspect
        kw = self.config_kwargs(sim=sim)
        accepted = inspect.signature(AccelConfig).parameters
        return AccelConfig(**{k: v for k, v in kw.items() if k in accepted})

    def weight_capacity(self) -> int:
        """Trits the weight memory holds (words x P x L)."""
        a = self.accel
        return a["weight_words"] * a["P"] * a["L"]
