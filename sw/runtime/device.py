"""The device driver: the protocol's commands as methods, and the weight-word packing.

    dev = Device(link); hello = dev.hello()
    dev.upload_layer(slot=0, trits=..., bias=..., m0=..., shift=..., out_zp=..., weight_base=0,
                     param_base=0)
    y = dev.run(0, x_int8)          # [tokens, K] -> [tokens, O], split to fit the board
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import framing as fr
from .link import Link, LinkError

# 2-bit two's-complement codes of a trit: 0 -> 00, +1 -> 01, -1 -> 11
_TRIT_CODES = np.array([3, 0, 1], dtype=np.uint8)      # indexed by trit + 1


def pack_weight_words(trits: np.ndarray, P: int, L: int) -> bytes:
    """Trits int8 [O, K] -> ceil(O/P) * ceil(K/L) weight words (docs/protocol.md), as bytes.

    Word (g, c) (output group g major, input chunk c minor) holds trit (g*P + p, c*L + l) in
    bits 2*(p*L + l) .. +1; padding is 0; each word is ceil(2*P*L/8) bytes, little-endian."""
    t = np.asarray(trits)
    if t.ndim != 2:
        raise ValueError(f"trits must be [O, K], got shape {t.shape}")
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("trits must be in {-1, 0, +1}")
    O, K = t.shape
    G, C = -(-O // P), -(-K // L)
    padded = np.zeros((G * P, C * L), dtype=np.int8)
    padded[:O, :K] = t
    codes = _TRIT_CODES[padded.astype(np.int16) + 1]                  # [G*P, C*L]
    codes = codes.reshape(G, P, C, L).transpose(0, 2, 1, 3).reshape(G * C, P * L)
    bits = 2 * P * L
    nbytes = (bits + 7) // 8
    pad = nbytes * 4 - P * L                                           # trits to a whole byte
    if pad:
        codes = np.concatenate([codes, np.zeros((G * C, pad), np.uint8)], axis=1)
    c4 = codes.reshape(G * C, nbytes, 4).astype(np.uint8)
    words = c4[..., 0] | (c4[..., 1] << 2) | (c4[..., 2] << 4) | (c4[..., 3] << 6)
    return words.astype(np.uint8).tobytes()


def unpack_weight_words(data: bytes, O: int, K: int, P: int, L: int) -> np.ndarray:
    """The inverse of pack_weight_words (for tests and for reading back)."""
    G, C = -(-O // P), -(-K // L)
    nbytes = (2 * P * L + 7) // 8
    raw = np.frombuffer(bytes(data), dtype=np.uint8).reshape(G * C, nbytes)
    codes = np.stack([(raw >> s) & 3 for s in (0, 2, 4, 6)], axis=-1).reshape(G * C, -1)
    codes = codes[:, :P * L].reshape(G, C, P, L).transpose(0, 2, 1, 3).reshape(G * P, C * L)
    if np.any(codes == 2):
        raise ValueError("code 10 is never a trit")
    trits = np.where(codes == 3, -1, codes).astype(np.int8)
    return trits[:O, :K]


def words_for(K: int, O: int, P: int, L: int) -> int:
    """Weight words one K x O layer occupies."""
    return -(-O // P) * -(-K // L)


def tokens_per_run(hello: fr.Hello, K: int, O: int) -> int:
    """The most tokens one RUN of a K x O layer may carry (request and reply within
    max_payload, at most max_tokens); 0 if not even one token fits."""
    return max(0, min(hello.max_tokens, (hello.max_payload - 3) // K, hello.max_payload // O))


def run_cycles_estimate(hello: fr.Hello, K: int, O: int, tokens: int) -> int:
    """Array cycles of one RUN (for sizing timeouts; the board's CYCLES is the measurement)."""
    return tokens * words_for(K, O, hello.P, hello.L) + 64 * tokens + 64


class Device:
    """The board behind a Link: HELLO, SET_LAYER, WRITE_WEIGHTS, WRITE_PARAMS, RUN, CYCLES."""

    def __init__(self, link: Link, *, frame_bytes: int | None = None):
        """frame_bytes: largest request/reply payload to use (default: the board's
        max_payload); smaller frames make a retry cheaper on a noisy line."""
        self.link = link
        self.frame_bytes = frame_bytes
        self.info: fr.Hello | None = None
        self.layers: dict[int, tuple[int, int]] = {}      # slot -> (K, O) as last set

    def hello(self) -> fr.Hello:
        """Ask the board for its configuration; afterwards frames are sized to fit it."""
        payload = self.link.transact(fr.HELLO, b"", reply_bytes=fr.HELLO_FORMAT.size)
        try:
            info = fr.Hello.unpack(payload)
        except ValueError as e:
            raise LinkError(f"bad HELLO reply: {e}")
        if info.protocol_version != fr.PROTOCOL_VERSION:
            raise LinkError(f"board speaks protocol {info.protocol_version}, host speaks "
                           f"{fr.PROTOCOL_VERSION}")
        self.info = info
        self.link.max_payload = info.max_payload
        return info

    @property
    def payload_limit(self) -> int:
        info = self._need_info()
        return min(info.max_payload, self.frame_bytes or info.max_payload)

    def tokens_per_run(self, K: int, O: int) -> int:
        """Tokens per RUN frame for a K x O layer on this device (within payload_limit)."""
        info = self._need_info()
        limit = dataclasses.replace(info, max_payload=self.payload_limit)
        return max(1, tokens_per_run(limit, K, O)) if tokens_per_run(info, K, O) else 0

    def _need_info(self) -> fr.Hello:
        if self.info is None:
            self.hello()
        return self.info

    def set_layer(self, slot: int, K: int, O: int, weight_base: int, param_base: int,
                  out_zp: int) -> None:
        self.link.transact(fr.SET_LAYER, fr.set_layer_payload(slot, K, O, weight_base,
                                                              param_base, out_zp))
        self.layers[slot] = (K, O)

    def write_weights(self, word_addr: int, words: bytes) -> None:
        """Write whole weight words from `word_addr`, in as many frames as max_payload needs."""
        info = self._need_info()
        wb = info.word_bytes
        if len(words) % wb:
            raise ValueError(f"{len(words)} bytes is not a whole number of {wb}-byte words")
        per_frame = max(1, (self.payload_limit - 4) // wb)
        for i in range(0, len(words) // wb, per_frame):
            chunk = words[i * wb:(i + per_frame) * wb]
            self.link.transact(fr.WRITE_WEIGHTS, fr.write_weights_payload(word_addr + i, chunk))

    def write_params(self, channel: int, bias, m0, shift) -> None:
        """Write per-channel (bias, m0, shift) records from `channel`, split to fit."""
        per_frame = max(1, (self.payload_limit - 2) // fr.PARAM_RECORD.size)
        n = len(bias)
        for i in range(0, n, per_frame):
            s = slice(i, i + per_frame)
            self.link.transact(fr.WRITE_PARAMS,
                               fr.write_params_payload(channel + i, bias[s], m0[s], shift[s]))

    def upload_layer(self, slot: int, *, trits, bias, m0, shift, out_zp: int,
                     weight_base: int, param_base: int) -> int:
        """Upload one layer's weights and parameters and describe it in `slot`.
        Returns the number of weight words written."""
        info = self._need_info()
        trits = np.asarray(trits)
        O, K = trits.shape
        words = pack_weight_words(trits, info.P, info.L)
        self.write_weights(weight_base, words)
        self.write_params(param_base, np.asarray(bias), np.asarray(m0), np.asarray(shift))
        self.set_layer(slot, K, O, weight_base, param_base, out_zp)
        return len(words) // info.word_bytes

    def run_once(self, slot: int, x: np.ndarray) -> np.ndarray:
        """One RUN: x int8 [tokens, K] (must fit one frame) -> int8 [tokens, O]."""
        info = self._need_info()
        K, O = self.layers[slot]
        x = np.ascontiguousarray(x, dtype=np.int8)
        tokens = x.shape[0]
        if x.ndim != 2 or x.shape[1] != K:
            raise ValueError(f"slot {slot} takes [tokens, {K}], got {list(x.shape)}")
        reply = self.link.transact(fr.RUN, fr.run_payload(slot, tokens, x.tobytes()),
                                   reply_bytes=tokens * O,
                                   cycles=run_cycles_estimate(info, K, O, tokens))
        if len(reply) != tokens * O:
            raise LinkError(f"RUN reply has {len(reply)} bytes, expected {tokens * O}")
        return np.frombuffer(reply, dtype=np.int8).reshape(tokens, O).copy()

    def run(self, slot: int, x: np.ndarray) -> np.ndarray:
        """x int8 [tokens, K] -> int8 [tokens, O], in as many RUNs as the board needs."""
        info = self._need_info()
        K, O = self.layers[slot]
        step = self.tokens_per_run(K, O)
        if step == 0:
            raise ValueError(f"a {K} x {O} layer does not fit one RUN frame "
                             f"(max_payload {info.max_payload})")
        x = np.asarray(x, dtype=np.int8)
        out = np.empty((x.shape[0], O), dtype=np.int8)
        for i in range(0, x.shape[0], step):
            out[i:i + step] = self.run_once(slot, x[i:i + step])
        return out

    def cycles(self) -> tuple[int, int]:
        """(busy_total, last_run) cycle counters."""
        return fr.unpack_cycles(self.link.transact(fr.CYCLES, b"",
                                                   reply_bytes=fr.CYCLES_FORMAT.size))
