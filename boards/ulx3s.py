"""Radiona ULX3S (Lattice ECP5, FT231X USB-UART at 3 Mbaud).

Clock: 25 MHz oscillator -> EHXPLLL -> 30 MHz (CLKI_DIV 5, CLKFB_DIV 6, CLKOP_DIV 20:
PFD 5 MHz, VCO 600 MHz).  30 MHz / 3 Mbaud = 10 clocks per bit exactly.  The clock follows
nextpnr: the accelerator placed on the 12F estimated 38.75 MHz, so 60 MHz (CLKFB_DIV 12,
CLKOP_DIV 10) failed; v1 is link-bound (the UART moves ~70 kB per vit-fmnist image, the array
needs ~36k cycles), so the lower clock costs almost nothing.  (48 MHz would need CLKI_DIV 25,
a 1 MHz PFD below the ECP5's 3.125 MHz minimum.)

Sizing (a weight word holds P*L trits at 2 bits; a DP16KD is 512 x 36 at its widest):
  12F  56 EBR, 12k LUT  P=8,  L=8   128-bit words, 4 EBR / 512 words, 4096 words = 32 EBR (262k trits)
  25F  56 EBR, 24k LUT  P=16, L=8   256-bit words, 8 EBR / 512 words, 2048 words = 32 EBR (262k trits)
  45F 108 EBR, 44k LUT  P=16, L=16  512-bit words, 15 EBR / 512 words, 2560 words = 75 EBR (655k trits)
  85F 208 EBR, 84k LUT  P=32, L=16  1024-bit words, 29 EBR / 512 words, 2560 words = 145 EBR (1.3M trits)
Per-channel parameters take 72 bits each (2 EBR per 512): 2048 channels = 8 EBR, 4096 = 16 EBR;
the two 4 kB payload buffers take 2 EBR each.  The vit-fmnist demo model (134,848 trits, 1866
channels) fits every ULX3S.
"""
from boards.board import Board

FT231X = (0x0403, 0x6015)
PLL_30MHZ = dict(CLKI_DIV=5, CLKFB_DIV=6, CLKOP_DIV=20, CLKOP_CPHASE=19)


def _ulx3s(size: str, lut: int, ebr: int, dsp: int, P: int, L: int, weight_words: int,
           param_channels: int, max_tokens: int) -> Board:
    return Board(
        name=f"ulx3s-{size.lower()}",
        description=f"Radiona ULX3S with LFE5U-{size} (FT231X UART, 3 Mbaud)",
        platform_path=f"amaranth_boards.ulx3s:ULX3S_{size}_Platform",
        family="ecp5", device=f"LFE5U-{size}",
        osc_hz=25_000_000, clock_hz=30_000_000, baud=3_000_000, pll=PLL_30MHZ,
        accel=dict(P=P, L=L, slots=64, weight_words=weight_words,
                   param_channels=param_channels, max_k=4096, max_o=4096,
                   max_tokens=max_tokens, max_payload=4096),
        usb_ids=(FT231X,), rx_timeout_us=1000, loader_board="ulx3s",
        resources=dict(lut=lut, ebr=ebr, ebr_bits=18432, dsp=dsp),
    )


BOARDS = (
    _ulx3s("12F", lut=12_288, ebr=56, dsp=28, P=8, L=8, weight_words=4096,
           param_channels=2048, max_tokens=256),
    _ulx3s("25F", lut=24_288, ebr=56, dsp=28, P=16, L=8, weight_words=2048,
           param_channels=2048, max_tokens=256),
    _ulx3s("45F", lut=43_848, ebr=108, dsp=72, P=16, L=16, weight_words=2560,
           param_channels=2048, max_tokens=512),
    _ulx3s("85F", lut=83_640, ebr=208, dsp=156, P=32, L=16, weight_words=2560,
           param_channels=4096, max_tokens=512),
)
