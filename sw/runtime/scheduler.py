"""Places a model's ternary linear layers on a board and runs the model with them offloaded.

    placements = plan(model.linear_layers(), hello)      # ModelTooLarge if it does not fit
    sched = Scheduler(device, model, placements); sched.upload()
    logits = sched.run(images_uint8)                      # sw.ref.graph.run with a device hook
    sched.layer_reports()                                 # per layer: bit-exact, mismatches, cycles

Every offloaded output is compared with `sw.ref.ops.ternary_linear` bit for bit; the device's
output (not the reference's) flows on through the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import framing as fr
from .device import Device, tokens_per_run, words_for


class ModelTooLarge(ValueError):
    """The model does not fit the board; the message says by how much."""


@dataclass(frozen=True)
class Placement:
    name: str
    K: int
    O: int
    slot: int
    weight_base: int      # word address
    words: int
    param_base: int       # channel index


def plan(layers, hello: fr.Hello) -> list[Placement]:
    """Place `layers` (objects with name, K, O) back to back in weight and parameter memory.

    Raises ModelTooLarge listing every limit exceeded and by how much.  With more layers than
    slots, slots are shared (a slot is re-described with SET_LAYER before its layer runs)."""
    problems = []
    placements = []
    w = p = 0
    for i, layer in enumerate(layers):
        K, O = int(layer.K), int(layer.O)
        if K > hello.max_k:
            problems.append(f"layer {layer.name}: K={K} exceeds max_k {hello.max_k} by {K - hello.max_k}")
        if O > hello.max_o:
            problems.append(f"layer {layer.name}: O={O} exceeds max_o {hello.max_o} by {O - hello.max_o}")
        if tokens_per_run(hello, K, O) == 0:
            problems.append(f"layer {layer.name}: one token of {K} inputs / {O} outputs does not "
                            f"fit a {hello.max_payload}-byte frame")
        n = words_for(K, O, hello.P, hello.L)
        placements.append(Placement(layer.name, K, O, i % hello.slots, w, n, p))
        w += n
        p += O
    if w > hello.weight_words:
        per_word = hello.P * hello.L
        problems.append(f"weights need {w} words of {per_word} trits, the board has "
                        f"{hello.weight_words}: {w - hello.weight_words} words "
                        f"({(w - hello.weight_words) * per_word} trits) too many")
    if p > hello.param_channels:
        problems.append(f"parameters need {p} channels, the board has {hello.param_channels}: "
                        f"{p - hello.param_channels} too many")
    if problems:
        raise ModelTooLarge("model does not fit the board: " + "; ".join(problems))
    return placements


@dataclass
class LayerReport:
    name: str
    K: int
    O: int
    calls: int = 0
    runs: int = 0
    tokens: int = 0
    cycles: int = 0
    mismatches: int = 0
    first_mismatch: dict | None = None     # {call, token, channel, device, reference}

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["bit_exact"] = self.bit_exact
        return d


class Scheduler:
    """Uploads a model's linear layers to a device and runs the model's graph with them."""

    def __init__(self, device: Device, model, placements: list[Placement] | None = None):
        self.device = device
        self.model = model
        self.layers = {l.name: l for l in model.linear_layers()}
        info = device.info or device.hello()
        self.placements = {pl.name: pl for pl in (placements or plan(self.layers.values(), info))}
        self.reports = {name: LayerReport(name, l.K, l.O) for name, l in self.layers.items()}
        self._slot_holds: dict[int, str] = {}
        self.recoveries = 0          # re-uploads after the board forgot its layers (a reset)
        self._busy: int | None = None    # the board's busy_total at the last CYCLES read
        self.max_recoveries = 3

    def upload(self, progress=None) -> None:
        """Write every layer's weights and parameters (once; they stay resident)."""
        for name, pl in self.placements.items():
            l = self.layers[name]
            self.device.upload_layer(pl.slot, trits=l.trits, bias=l.bias, m0=l.m0,
                                     shift=l.shift, out_zp=l.out_zp,
                                     weight_base=pl.weight_base, param_base=pl.param_base)
            self._slot_holds[pl.slot] = name
            if progress is not None:
                progress(name)

    def _select(self, pl: Placement) -> None:
        if self._slot_holds.get(pl.slot) != pl.name:
            l = self.layers[pl.name]
            self.device.set_layer(pl.slot, l.K, l.O, pl.weight_base, pl.param_base, l.out_zp)
            self._slot_holds[pl.slot] = pl.name

    def linear(self, layer, x: np.ndarray) -> np.ndarray:
        """The graph's linear hook: run `layer` on the device, check it against the reference."""
        from sw.ref import ops
        pl = self.placements[layer.name]
        rep = self.reports[layer.name]
        self._select(pl)
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(-1, layer.K)
        step = self.device.tokens_per_run(layer.K, layer.O)
        y = np.empty((x.shape[0], layer.O), dtype=np.int8)
        if self._busy is None:
            self._busy = self.device.cycles()[0]
        for i in range(0, x.shape[0], step):
            y[i:i + step] = self._run_once(pl, x[i:i + step])
            rep.runs += 1
        # One CYCLES read per call, not per RUN: busy_total only grows while RUNs execute, so
        # its growth over the call is the call's cycles, at half the round trips.
        busy = self.device.cycles()[0]
        rep.cycles += busy - self._busy if busy >= self._busy else busy     # < : board reset
        self._busy = busy
        ref = ops.ternary_linear(x, layer.trits, layer.bias, layer.m0, layer.shift, layer.out_zp)
        bad = np.argwhere(y != ref)
        if len(bad):
            if rep.first_mismatch is None:
                t, o = (int(v) for v in bad[0])
                rep.first_mismatch = dict(call=rep.calls, token=t, channel=o,
                                          device=int(y[t, o]), reference=int(ref[t, o]))
            rep.mismatches += len(bad)
        rep.calls += 1
        rep.tokens += x.shape[0]
        return y

    def _run_once(self, pl: Placement, x: np.ndarray) -> np.ndarray:
        """One RUN; if the board lost its slot table (it was reset), upload again and retry."""
        from .link import DeviceError
        try:
            return self.device.run_once(pl.slot, x)
        except DeviceError as e:
            if e.code != fr.ERR_BAD_SLOT or self.recoveries >= self.max_recoveries:
                raise
        self.recoveries += 1
        self._slot_holds.clear()
        self.upload()
        self._select(pl)
        return self.device.run_once(pl.slot, x)

    def run(self, images: np.ndarray) -> np.ndarray:
        """int8 logits of uint8 images, every linear layer on the device."""
        from sw.ref import graph
        return graph.run(self.model, images, linear=self.linear)

    def layer_reports(self) -> list[LayerReport]:
        return [self.reports[n] for n in self.layers]

    @property
    def mismatches(self) -> int:
        return sum(r.mismatches for r in self.reports.values())
