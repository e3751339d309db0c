"""Layer shapes and random layer data for the benches, and an independent weight-word packer."""
from __future__ import annotations

import numpy as np

from sw.ref import ops

# (K, O, tokens) of every ternary linear layer of vit-fmnist (28x28, patch 7, dim 64, mlp 128)
VIT_FMNIST_LAYERS = [
    ("patch_embed", 49, 64, 16),
    ("qkv", 64, 192, 17),
    ("proj", 64, 64, 17),
    ("fc1", 64, 128, 17),
    ("fc2", 128, 64, 17),
    ("head", 64, 10, 1),
]
# a small Swin (patch 4 on 1 channel, dim 32, one merge to 64, window 7): its distinct shapes
SWIN_SMALL_LAYERS = [
    ("patch_embed", 16, 32, 49),
    ("qkv", 32, 96, 49),
    ("proj", 32, 32, 49),
    ("fc1", 32, 128, 49),
    ("fc2", 128, 32, 49),
    ("merge", 128, 64, 12),
    ("qkv2", 64, 192, 12),
    ("head", 64, 10, 1),
]


def pack_words(trits: np.ndarray, P: int, L: int) -> bytes:
    """docs/protocol.md weight words, written out loop by loop (an oracle for the fast packer)."""
    O, K = trits.shape
    G, C = -(-O // P), -(-K // L)
    nbytes = (2 * P * L + 7) // 8
    out = bytearray()
    for g in range(G):
        for c in range(C):
            word = 0
            for p in range(P):
                for l in range(L):
                    o, k = g * P + p, c * L + l
                    t = int(trits[o, k]) if o < O and k < K else 0
                    word |= {0: 0, 1: 1, -1: 3}[t] << (2 * (p * L + l))
            out += word.to_bytes(nbytes, "little")
    return bytes(out)


def random_layer(rng: np.random.Generator, K: int, O: int, tokens: int, *, zero_frac=1 / 3):
    """Random trits, inputs, folded bias and (m0, shift) from TFLite's QuantizeMultiplier."""
    trits = rng.choice([-1, 0, 1], size=(O, K), p=[(1 - zero_frac) / 2, zero_frac,
                                                    (1 - zero_frac) / 2]).astype(np.int8)
    x = rng.integers(-128, 128, size=(tokens, K), dtype=np.int64).astype(np.int8)
    bias = rng.integers(-(1 << 14), 1 << 14, size=O).astype(np.int32)
    # outputs spread over the int8 range, a few saturating: multiplier ~ 1 / (16 sqrt K) .. 4x
    reals = np.exp(rng.uniform(np.log(0.25), np.log(4.0), size=O)) / (8 * np.sqrt(K))
    ms = [ops.quantize_multiplier(r) for r in reals]
    m0 = np.array([m for m, _ in ms], dtype=np.int32)
    shift = np.array([s for _, s in ms], dtype=np.int32)
    zp = int(rng.integers(-20, 21))
    return dict(trits=trits, x=x, bias=bias, m0=m0, shift=shift, zp=zp)


def reference(layer) -> np.ndarray:
    return ops.ternary_linear(layer["x"], layer["trits"], layer["bias"], layer["m0"],
                              layer["shift"], layer["zp"])
