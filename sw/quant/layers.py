"""Quantized drop-in layers: same parameter names (``weight``, ``bias``) as nn.Linear / nn.Conv2d."""
import torch
import torch.nn.functional as F
from torch import nn

from .weights import fake_int8, fake_ternary, ternarize, quantize_int8_per_channel

MODES = ("fp", "int8", "ternary")
GRANULARITIES = ("channel", "layer")


class _QuantWeightMixin:
    """``mode`` selects the weight quantizer; ``granularity`` applies to ternary."""

    def _init_quant(self, mode: str, granularity: str):
        self.set_quant(mode, granularity)

    def set_quant(self, mode: str, granularity: str = "channel"):
        if mode not in MODES:
            raise ValueError(f"unknown weight mode {mode!r} (one of {', '.join(MODES)})")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r} (channel | layer)")
        self.mode, self.granularity = mode, granularity

    def quant_weight(self) -> torch.Tensor:
        """The weight as used in forward: float, int8 fake-quant or ternary (with STE)."""
        if self.mode == "ternary":
            return fake_ternary(self.weight, self.granularity)
        if self.mode == "int8":
            return fake_int8(self.weight)
        return self.weight

    def ternary_weights(self):
        """``(trits int8 [O, K], alpha float32 [O])``; K in the weight's flatten order (C, kh, kw)."""
        return ternarize(self.weight.detach().reshape(self.weight.shape[0], -1), self.granularity)

    def int8_weights(self):
        """``(q int8 [O, K], scale float32 [O])``: symmetric per-channel 8-bit codes."""
        return quantize_int8_per_channel(self.weight.detach().reshape(self.weight.shape[0], -1))


class QuantLinear(_QuantWeightMixin, nn.Linear):
    """nn.Linear whose forward uses a quantized weight (``mode`` fp | int8 | ternary)."""

    def __init__(self, in_features, out_features, bias=True, mode="ternary", granularity="channel",
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_quant(mode, granularity)

    @classmethod
    def from_linear(cls, m: nn.Linear, mode="ternary", granularity="channel"):
        """Wrap an existing nn.Linear, sharing its parameters."""
        q = cls(m.in_features, m.out_features, bias=m.bias is not None, mode=mode,
                granularity=granularity, device="meta")
        q.weight, q.bias = m.weight, m.bias
        q.train(m.training)
        return q

    def forward(self, x):
        return F.linear(x, self.quant_weight(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", mode={self.mode}, granularity={self.granularity}"


class QuantConv2d(_QuantWeightMixin, nn.Conv2d):
    """nn.Conv2d with a quantized weight; the patch embedding (kernel == stride) is a linear over patches."""

    def __init__(self, *args, mode="ternary", granularity="channel", **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(mode, granularity)

    @classmethod
    def from_conv(cls, m: nn.Conv2d, mode="ternary", granularity="channel"):
        """Wrap an existing nn.Conv2d, sharing its parameters and geometry."""
        q = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                padding_mode=m.padding_mode, mode=mode, granularity=granularity, device="meta")
        q.weight, q.bias = m.weight, m.bias
        q.train(m.training)
        return q

    def forward(self, x):
        return self._conv_forward(x, self.quant_weight(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", mode={self.mode}, granularity={self.granularity}"
