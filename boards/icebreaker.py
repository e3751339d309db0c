"""1BitSquared iCEBreaker (Lattice iCE40UP5K, FT2232H USB-UART).

Clock: the 12 MHz oscillator directly (no PLL); 1 Mbaud = 12 clocks per bit (the FT2232H
divides 3 MHz / 3 exactly).  The UP5K has 30 EBR of 4 kbit (256 x 16 .. 2048 x 2), 4 SPRAM
of 256 kbit and 8 DSPs in 5280 LUTs.  The SPRAMs are single-port (one address for reading and
writing) and the weight memory has separate write and read ports, so everything lives in EBR.  The v1 engine, link and
requantizer take most of the logic (4 x 4 with 8 slots placed 6372 LCs, 2 x 4 with 4 slots
5523), so the iCEBreaker gets the smallest legal array, P=2 x L=2, and 2 slots: 5033 LCs
(95 %), 17 EBR (4096 8-bit weight words = 16k trits, 256 parameter channels, 512-byte
buffers), 4 DSPs, routed Fmax 21 MHz.  A bring-up target: too small for the vit-fmnist demo
(1866 channels), which `sw.deploy` says before touching the board (exit 2).
"""
from boards.board import Board

BOARD = Board(
    name="icebreaker",
    description="1BitSquared iCEBreaker with iCE40UP5K (FT2232H UART, 1 Mbaud)",
    platform_path="amaranth_boards.icebreaker:ICEBreakerPlatform",
    family="ice40", device="iCE40UP5K",
    osc_hz=12_000_000, clock_hz=12_000_000, baud=1_000_000, pll=None,
    accel=dict(P=2, L=2, slots=2, weight_words=4096, param_channels=256,
               max_k=256, max_o=256, max_tokens=64, max_payload=512),
    usb_ids=((0x0403, 0x6010),), rx_timeout_us=2000, loader_board="ice40_generic",
    resources=dict(lut=5280, ebr=30, ebr_bits=4096, spram=4, dsp=8),
)
