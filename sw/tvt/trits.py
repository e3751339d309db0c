"""Packing of ternary weights, five trits to a byte (3^5 = 243 <= 256, 1.6 bits/weight).

Byte value = sum_i (t_i + 1) * 3^i for the five trits t_0..t_4 in storage (C) order; the last
byte is padded with trit 0 (digit 1). Bytes 243..255 never occur.
"""
import numpy as np

_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)
# _DECODE[b] = the five trits of byte b (rows 243..255 are never valid).
_DECODE = ((np.arange(243, dtype=np.int16)[:, None] // _POW3.astype(np.int16)) % 3 - 1).astype(np.int8)


def packed_size(n: int) -> int:
    """Bytes needed for n trits."""
    return (n + 4) // 5


def pack_trits(trits: np.ndarray) -> np.ndarray:
    """Pack an int8 array with values in {-1, 0, +1} (any shape) to uint8, 5 trits a byte."""
    t = np.asarray(trits).reshape(-1)
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("trits must be in {-1, 0, +1}")
    n = t.size
    digits = np.ones(packed_size(n) * 5, dtype=np.uint8)
    digits[:n] = (t + 1).astype(np.uint8)
    return (digits.reshape(-1, 5) * _POW3).sum(axis=1, dtype=np.uint16).astype(np.uint8)


def unpack_trits(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of pack_trits: the first n trits as int8. Raises ValueError on bytes >= 243,
    a wrong byte count or non-zero padding trits."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if p.size != packed_size(n):
        raise ValueError(f"{p.size} packed bytes for {n} trits (need {packed_size(n)})")
    if p.size and p.max() >= 243:
        raise ValueError(f"packed trit byte {int(p.max())} >= 243")
    t = _DECODE[p].reshape(-1)
    if np.any(t[n:] != 0):
        raise ValueError("non-zero padding trits")
    return t[:n].copy()
