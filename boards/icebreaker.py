"""1BitSquared iCEBreaker (Lattice iCE40UP5K, FT2232H USB-UART).

Clock: the 12 MHz oscillator directly (no PLL); 1 Mbaud = 12 clocks per bit (the FT2232H
divides 3 MHz / 3 exactly).  The UP5K has 30 EBR of 4 kbit, 4 SPRAM of 256 kbit (16 bit x 16k)
and 8 DSPs in 5280 LUTs: P=4, L=8 gives 64-bit weight words, i.e. the four SPRAMs side by
side, 16384 words = 512k trits; parameters and buffers take the EBR.
"""
from boards.board import Board

BOARD = Board(
    name="icebreaker",
    description="1BitSquared iCEBreaker with iCE40UP5K (FT2232H UART, 1 Mbaud)",
    platform_path="amaranth_boards.icebreaker:ICEBreakerPlatform",
    family="ice40", device="iCE40UP5K",
    osc_hz=12_000_000, clock_hz=12_000_000, baud=1_000_000, pll=None,
    accel=dict(P=4, L=8, slots=32, weight_words=16384, param_channels=512,
               max_k=2048, max_o=2048, max_tokens=64, max_payload=2048),
    usb_ids=((0x0403, 0x6010),), rx_timeout_us=2000, loader_board="ice40_generic",
    resources=dict(lut=5280, ebr=30, ebr_bits=4096, spram=4, dsp=8),
)
