"""Analytic cycle count of the accelerator's RUN command (hw/core.py), FINN-MVAU style.

A RUN of ``tokens`` tokens through a K x O layer on a P x L array walks T*G output groups
(G = ceil(O/P)), each of C = ceil(K/L) chunks, one chunk per cycle. A group's P sums go through
a serializer into the single requantizer at one channel per cycle, so a group occupies
max(C, P) cycles (the first one C). After the last chunk the pipeline drains: 3 cycles of
memory read + adder tree + accumulator, then the serializer stays busy P cycles, while the
last group's nv = O - (G-1)*P real channels each pass 1 parameter-read cycle and 5
requantizer stages: max(3 + P, 3 + nv + 1 + 5) cycles.

``run_cycles`` is what the board's CYCLES command reports as ``last_run``: the cycles the
core is busy, from the start of computation to the last result written.
"""
from __future__ import annotations

import math

__all__ = ["run_cycles", "useful_macs", "utilisation"]

MAC_LATENCY = 3          # memory read, adder tree, accumulator
REQUANT_LATENCY = 1 + 5  # parameter read, requantizer stages


def run_cycles(K: int, O: int, tokens: int, P: int, L: int) -> int:
    """Cycles of one RUN of a K x O layer over ``tokens`` tokens on a P x L array."""
    if min(K, O, tokens, P, L) <= 0:
        raise ValueError("K, O, tokens, P and L must be positive")
    C, G = math.ceil(K / L), math.ceil(O / P)
    groups = tokens * G
    last_group = O - (G - 1) * P
    drain = MAC_LATENCY + max(P, last_group + REQUANT_LATENCY)
    return C + (groups - 1) * max(C, P) + drain


def useful_macs(K: int, O: int, tokens: int) -> int:
    return K * O * tokens


def utilisation(K: int, O: int, tokens: int, P: int, L: int) -> float:
    """Useful MACs / (P * L * cycles)."""
    return useful_macs(K, O, tokens) / (P * L * run_cycles(K, O, tokens, P, L))
