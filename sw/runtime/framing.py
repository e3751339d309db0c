"""Frames of the wire protocol, version 1 (docs/protocol.md).  Standard library only.

    frame = SYNC0 SYNC1 LEN(u16) SEQ(u8) CMD(u8) PAYLOAD CRC32(u32, over LEN..PAYLOAD)

`encode` builds one frame; `Decoder` turns a byte stream into frames, resynchronising on
garbage and skipping frames with a bad CRC or a LEN above `max_payload` (like the board).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<HBB")          # LEN, SEQ, CMD (after the two sync bytes)
OVERHEAD = 2 + HEADER.size + 4          # 10 bytes a frame
PROTOCOL_VERSION = 1

# Commands (request codes; a success reply is CMD | REPLY_BIT, an error reply is ERROR).
HELLO, SET_LAYER, WRITE_WEIGHTS, WRITE_PARAMS, RUN, CYCLES = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
REPLY_BIT = 0x80
ERROR = 0xFF
COMMAND_NAMES = {HELLO: "HELLO", SET_LAYER: "SET_LAYER", WRITE_WEIGHTS: "WRITE_WEIGHTS",
                 WRITE_PARAMS: "WRITE_PARAMS", RUN: "RUN", CYCLES: "CYCLES"}

# Error codes (payload of an ERROR reply: code u8, request CMD u8).
ERR_CRC, ERR_UNKNOWN_CMD, ERR_BAD_LENGTH, ERR_BAD_SLOT, ERR_OUT_OF_RANGE = 1, 2, 3, 4, 5
ERROR_NAMES = {ERR_CRC: "CRC", ERR_UNKNOWN_CMD: "UNKNOWN_CMD", ERR_BAD_LENGTH: "BAD_LENGTH",
               ERR_BAD_SLOT: "BAD_SLOT", ERR_OUT_OF_RANGE: "OUT_OF_RANGE"}

MAX_LEN = 0xFFFF


@dataclass(frozen=True)
class Frame:
    seq: int
    cmd: int
    payload: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.cmd == ERROR

    def error(self) -> tuple[int, int]:
        """(code, request cmd) of an ERROR reply."""
        if not self.is_error or len(self.payload) != 2:
            raise ValueError("not a well-formed error reply")
        return self.payload[0], self.payload[1]

    def encode(self) -> bytes:
        return encode(self.seq, self.cmd, self.payload)


def crc32(data: bytes) -> int:
    """CRC-32 as the protocol uses it (zlib.crc32 = CRC32_ETHERNET)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def encode(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    """One frame, ready for the wire."""
    payload = bytes(payload)
    if not 0 <= seq <= 0xFF or not 0 <= cmd <= 0xFF:
        raise ValueError(f"seq and cmd are bytes (got seq={seq}, cmd={cmd})")
    if len(payload) > MAX_LEN:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 16-bit LEN field")
    body = HEADER.pack(len(payload), seq, cmd) + payload
    return SYNC + body + struct.pack("<I", crc32(body))


def decode(data: bytes) -> Frame:
    """Exactly one whole frame -> Frame; ValueError saying what is wrong otherwise."""
    data = bytes(data)
    if len(data) < OVERHEAD:
        raise ValueError(f"a frame is at least {OVERHEAD} bytes, got {len(data)}")
    if data[:2] != SYNC:
        raise ValueError(f"bad sync bytes {data[:2].hex()}")
    length, seq, cmd = HEADER.unpack_from(data, 2)
    if len(data) != OVERHEAD + length:
        raise ValueError(f"LEN says {length} payload bytes, frame has {len(data) - OVERHEAD}")
    body, (crc,) = data[2:-4], struct.unpack("<I", data[-4:])
    if crc32(body) != crc:
        raise ValueError(f"CRC mismatch: frame says {crc:08x}, computed {crc32(body):08x}")
    return Frame(seq, cmd, data[6:-4])


class Decoder:
    """Incremental decoder: `feed(bytes)` returns the whole, CRC-good frames completed so far.

    Counts what it threw away: `crc_errors` (frames with a bad CRC), `oversize` (LEN above
    max_payload), `garbage_bytes` (bytes skipped while hunting for sync)."""

    def __init__(self, max_payload: int = MAX_LEN):
        self.max_payload = max_payload
        self._buf = bytearray()
        self.crc_errors = 0
        self.oversize = 0
        self.garbage_bytes = 0

    def reset(self) -> None:
        """Forget a partial frame (what the board's receive timeout does)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # keep a trailing SYNC0: it may be the start of the next frame
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.garbage_bytes += len(buf) - keep
                del buf[:len(buf) - keep]
                break
            if start:
                self.garbage_bytes += start
                del buf[:start]
            if len(buf) < 2 + HEADER.size:
                break
            length = HEADER.unpack_from(buf, 2)[0]
            if length > self.max_payload:
                self.oversize += 1
                del buf[:1]          # hunt again from the next byte
                continue
            total = OVERHEAD + length
            if len(buf) < total:
                break
            body = bytes(buf[2:total - 4])
            crc = struct.unpack_from("<I", buf, total - 4)[0]
            if crc32(body) == crc:
                _, seq, cmd = HEADER.unpack_from(body)
                out.append(Frame(seq, cmd, body[HEADER.size:]))
                del buf[:total]
            else:
                self.crc_errors += 1
                del buf[:1]          # a false sync or a damaged frame: hunt from the next byte
        return out


# ---- payloads ---------------------------------------------------------------------------

HELLO_FORMAT = struct.Struct("<BBBBIHHHHHIIIIII")   # 42 bytes
SET_LAYER_FORMAT = struct.Struct("<BHHIHb")
PARAM_RECORD = struct.Struct("<iib")                  # bias, m0, shift: 9 bytes
CYCLES_FORMAT = struct.Struct("<QI")


@dataclass(frozen=True)
class Hello:
    """The board's configuration record (HELLO reply)."""
    protocol_version: int
    P: int
    L: int
    slots: int
    weight_words: int
    param_channels: int
    max_k: int
    max_o: int
    max_tokens: int
    max_payload: int
    clock_hz: int
    baud: int
    rx_timeout_us: int
    build_id: int

    @classmethod
    def unpack(cls, payload: bytes) -> "Hello":
        if len(payload) != HELLO_FORMAT.size:
            raise ValueError(f"HELLO record is {HELLO_FORMAT.size} bytes, got {len(payload)}")
        fields = HELLO_FORMAT.unpack(payload)
        return cls(*fields[:14])

    def pack(self) -> bytes:
        return HELLO_FORMAT.pack(self.protocol_version, self.P, self.L, self.slots,
                                 self.weight_words, self.param_channels, self.max_k, self.max_o,
                                 self.max_tokens, self.max_payload, self.clock_hz, self.baud,
                                 self.rx_timeout_us, self.build_id, 0, 0)

    @property
    def word_bytes(self) -> int:
        """Bytes of one weight word on the wire: ceil(2*P*L / 8)."""
        return (2 * self.P * self.L + 7) // 8


def set_layer_payload(slot: int, K: int, O: int, weight_base: int, param_base: int,
                      out_zp: int) -> bytes:
    return SET_LAYER_FORMAT.pack(slot, K, O, weight_base, param_base, out_zp)


def write_weights_payload(word_addr: int, words: bytes) -> bytes:
    return struct.pack("<I", word_addr) + bytes(words)


def write_params_payload(channel: int, bias, m0, shift) -> bytes:
    out = bytearray(struct.pack("<H", channel))
    for b, m, s in zip(bias, m0, shift, strict=True):
        out += PARAM_RECORD.pack(int(b), int(m), int(s))
    return bytes(out)


def run_payload(slot: int, tokens: int, activations: bytes) -> bytes:
    return struct.pack("<BH", slot, tokens) + bytes(activations)


def unpack_cycles(payload: bytes) -> tuple[int, int]:
    """CYCLES reply -> (busy_total, last_run)."""
    if len(payload) != CYCLES_FORMAT.size:
        raise ValueError(f"CYCLES reply is {CYCLES_FORMAT.size} bytes, got {len(payload)}")
    return CYCLES_FORMAT.unpack(payload)


def bytes_needed(decoder: "Decoder") -> int:
    """How many more bytes would complete the frame `decoder` holds (>= 1): lets a reader
    ask for exactly that many and return as soon as they arrive."""
    buf = decoder._buf
    if len(buf) < 2 + HEADER.size:
        return 2 + HEADER.size - len(buf)
    length = HEADER.unpack_from(buf, 2)[0]
    return max(1, OVERHEAD + min(length, decoder.max_payload) - len(buf))
