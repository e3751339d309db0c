"""Radiona ULX3S (Lattice ECP5, FT231X USB-UART at 3 Mbaud).

Clock: 25 MHz oscillator -> EHXPLLL -> 30 MHz (CLKI_DIV 5, CLKFB_DIV 6, CLKOP_DIV 20:
PFD 5 MHz, VCO 600 MHz).  30 MHz / 3 Mbaud = 10 clocks per bit exactly.  The clock follows
nextpnr: the routed 8 x 8 design reaches 38.4 MHz on the 12F and 35.3 MHz on the 85F, below
the next exact clocks (45 MHz = 15 clocks a bit, 60 MHz); v1 is link-bound (the UART moves
~70 kB per vit-fmnist image, the array needs ~36k cycles), so the lower clock costs almost
nothing.  (48 MHz would need CLKI_DIV 25, a 1 MHz PFD below the ECP5's 3.125 MHz minimum.)

Sizing (a weight word holds P*L = 64 trits at 2 bits = 128 bits; a DP16KD is 512 x 36 at its
widest, so 4 EBR per 512 words):
  12F  56 EBR, 12k LUT  4096 words = 32 EBR (262k trits), 2048 parameter channels (8 EBR)
  25F  56 EBR, 24k LUT  4096 words = 32 EBR (262k trits), 2048 parameter channels (8 EBR)
  45F 108 EBR, 44k LUT  8192 words = 64 EBR (524k trits), 4096 parameter channels (16 EBR)
  85F 208 EBR, 84k LUT  8192 words = 64 EBR (524k trits), 4096 parameter channels (16 EBR)
Per-channel parameters take 72 bits each (2 EBR per 512); the L payload banks and the 4 kB
output buffer take 8 + 2 EBR.  The vit-fmnist demo model (134,848 trits, 1866 channels) fits
every ULX3S.  (The 85F could hold 16384 words, but a 32-deep EBR cascade puts a 32:1
multiplexer on the 128-bit read path; 8192 words already hold models four times the demo.)
"""
from boards.board import Board

FT231X = (0x0403, 0x6015)
PLL_30MHZ = dict(CLKI_DIV=5, CLKFB_DIV=6, CLKOP_DIV=20, CLKOP_CPHASE=19)
# One requantizer retires one output channel a cycle, so an array of P output channels idles
# once P > ceil(K/L); for vit-fmnist (K = 49, 64, 128) 8 x 8 keeps 96.5 % of its MACs busy and
# any larger array buys nothing (docs/hardware.md "Choosing P and L").  Every ULX3S therefore
# has the 8 x 8 array; the bigger dies get more weight and parameter memory instead.
ARRAY_P, ARRAY_L = 8, 8
# Layer slots are registers with a slots:1 multiplexer per field; the runtime shares them
# (a slot is re-described with SET_LAYER before its layer runs), so 16 cost little.
SLOTS = 16


def _ulx3s(size: str, lut: int, ebr: int, dsp: int, weight_words: int,
           param_channels: int, max_tokens: int) -> Board:
    return Board(
        name=f"ulx3s-{size.lower()}",
        description=f"Radiona ULX3S with LFE5U-{size} (FT231X UART, 3 Mbaud)",
        platform_path=f"amaranth_boards.ulx3s:ULX3S_{size}_Platform",
        family="ecp5", device=f"LFE5U-{size}",
        osc_hz=25_000_000, clock_hz=30_000_000, baud=3_000_000, pll=PLL_30MHZ,
        accel=dict(P=ARRAY_P, L=ARRAY_L, slots=SLOTS, weight_words=weight_words,
                   param_channels=param_channels, max_k=4096, max_o=4096,
                   max_tokens=max_tokens, max_payload=4096),
        usb_ids=(FT231X,), rx_timeout_us=1000, loader_board="ulx3s",
        resources=dict(lut=lut, ebr=ebr, ebr_bits=18432, dsp=dsp),
    )


BOARDS = (
    _ulx3s("12F", lut=12_288, ebr=56, dsp=28, weight_words=4096, param_channels=2048,
           max_tokens=256),
    _ulx3s("25F", lut=24_288, ebr=56, dsp=28, weight_words=4096, param_channels=2048,
           max_tokens=256),
    _ulx3s("45F", lut=43_848, ebr=108, dsp=72, weight_words=8192, param_channels=4096,
           max_tokens=512),
    _ulx3s("85F", lut=83_640, ebr=208, dsp=156, weight_words=8192, param_channels=4096,
           max_tokens=512),
)
