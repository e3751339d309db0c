"""Accelerator configuration: array shape, memory sizes, clocking, and the widths derived from them.

Boards instantiate one :class:`AccelConfig` each; tests use :func:`sim_config`.

Accumulator width, proved: a ternary product t*x with t in {-1, 0, +1} and x in [-128, 127] lies
in [-128, +128] (+128 = -1 * -128). A sum of K of them lies in [-128*K, +128*K], and
128*K <= 2^(7 + c) with c = ceil(log2 K). A signed n-bit number holds +2^(7+c) iff n >= 9 + c, so
``sum_bits = 9 + ceil(log2 max_k)`` (that is 8 magnitude bits + ceil(log2 K) + the sign). Adding
the int32 bias needs one bit more than the wider operand: ``acc_bits = max(32, sum_bits) + 1``.
The requantizer works on that width, so, unlike a wrapping int32 accumulator, nothing ever wraps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AccelConfig", "sim_config", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of one accelerator instance (see docs/hardware.md)."""
    P: int = 4                    # output channels per cycle
    L: int = 8                    # input lanes per cycle
    slots: int = 8                # layer descriptors
    weight_words: int = 8192      # weight memory depth, words of 2*P*L bits
    param_channels: int = 1024    # per-channel (bias, m0, shift) records
    max_k: int = 1024
    max_o: int = 1024
    max_tokens: int = 256
    max_payload: int = 4096       # bytes: request payload buffer and output buffer
    clock_hz: int = 48_000_000
    baud: int = 3_000_000
    rx_timeout_us: int = 1000
    build_id: int = 0

    def __post_init__(self):
        if not (_pow2(self.P) and _pow2(self.L)) or self.P * self.L < 4:
            raise ValueError(f"P and L must be powers of two with P*L >= 4, got P={self.P} L={self.L}")
        for name in ("slots", "weight_words", "param_channels", "max_k", "max_o", "max_tokens",
                     "max_payload", "clock_hz", "baud", "rx_timeout_us"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.slots > 256 or self.max_payload > 65535 or self.max_k > 65535 or self.max_o > 65535:
            raise ValueError("slots <= 256 and max_payload, max_k, max_o < 65536 (protocol field widths)")
        if self.max_tokens > 65535 or self.param_channels > 65535:
            raise ValueError("max_tokens and param_channels must fit u16")
        if self.max_payload < 42:
            raise ValueError("max_payload must hold at least the 42-byte HELLO record")
        div = self.clock_hz / self.baud
        if div < 4:
            raise ValueError(f"clock_hz/baud = {div:.2f}: need at least 4 clocks per bit")
        if abs(round(div) - div) / div > 0.02:
            raise ValueError(f"clock_hz/baud = {div:.3f} is not within 2 % of an integer divisor")

    # ---- derived quantities -------------------------------------------------------------
    @property
    def baud_divisor(self) -> int:
        """Clock cycles per UART bit."""
        return round(self.clock_hz / self.baud)

    @property
    def rx_timeout_cycles(self) -> int:
        return max(1, self.clock_hz * self.rx_timeout_us // 1_000_000)

    @property
    def word_bits(self) -> int:
        """One weight word: 2 bits per trit, P*L trits."""
        return 2 * self.P * self.L

    @property
    def word_bytes(self) -> int:
        return (self.word_bits + 7) // 8

    @property
    def sum_bits(self) -> int:
        """Signed width of a sum of max_k ternary products of int8 (see module docstring)."""
        return 9 + math.ceil(math.log2(max(2, self.max_k)))

    @property
    def acc_bits(self) -> int:
        """Signed width of bias + sum."""
        return max(32, self.sum_bits) + 1

    @property
    def out_bytes(self) -> int:
        """Output buffer size in bytes (tokens*O of one RUN must fit)."""
        return self.max_payload

    def weight_words_for(self, K: int, O: int) -> int:
        return math.ceil(O / self.P) * math.ceil(K / self.L)

    def hello_fields(self) -> tuple:
        """The HELLO record's fields, in docs/protocol.md order (`<BBBBIHHHHHIIIIII`)."""
        return (PROTOCOL_VERSION, self.P, self.L, self.slots, self.weight_words,
                self.param_channels, self.max_k, self.max_o, self.max_tokens, self.max_payload,
                self.clock_hz, self.baud, self.rx_timeout_us, self.build_id, 0, 0)

    def hello_record(self) -> bytes:
        import struct
        return struct.pack("<BBBBIHHHHHIIIIII", *self.hello_fields())


def sim_config(**overrides) -> AccelConfig:
    """The small, fast configuration the testbenches use: P=4, L=8, 4 clocks per UART bit."""
    base = dict(P=4, L=8, slots=8, weight_words=4096, param_channels=1024, max_k=512, max_o=256,
                max_tokens=64, max_payload=4096, clock_hz=48_000_000, baud=12_000_000,
                rx_timeout_us=50, build_id=0x7E5_0001)
    base.update(overrides)
    return AccelConfig(**base)
