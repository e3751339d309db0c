"""QuantPoint: a named place where the integer model holds an int8 tensor."""
from typing import Iterator

from torch import nn


class QuantPoint(nn.Module):
    """Identity in float mode; `sw.quant` attaches a fake quantizer that rounds to int8.

    Every tensor that the integer reference keeps as int8 passes through exactly one
    QuantPoint, so the fake-quantized torch model predicts the integer model's accuracy and
    `sw.pack` reads each tensor's (scale, zero_point) from `self.quantizer`.
    `kind` is "act" (observed per-tensor scale and zero point) or "softmax" (fixed
    scale 1/256 and zero point -128, as TFLite's int8 SOFTMAX output).
    `floor`, if set, is the lowest real value worth representing: the observer ignores
    anything below it and such values saturate to -128 (Swin's shift mask of -100 would
    otherwise take almost all of the 256 levels from the relative position bias).
    """

    def __init__(self, kind: str = "act", floor: float | None = None):
        super().__init__()
        if kind not in ("act", "softmax"):
            raise ValueError(f"unknown QuantPoint kind {kind!r}")
        self.kind = kind
        self.floor = floor
        self.quantizer = None

    def forward(self, x):
        return x if self.quantizer is None else self.quantizer(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}" + ("" if self.floor is None else f", floor={self.floor}")


def named_quant_points(model: nn.Module) -> Iterator[tuple[str, QuantPoint]]:
    """(qualified name, QuantPoint) in forward order (the models register modules in the order
    forward() calls them)."""
    for name, m in model.named_modules():
        if isinstance(m, QuantPoint):
            yield name, m
