"""Fake quantization for TerViT: channel-wise ternary / 8-bit weights, int8 activations.

``prepare(model, weights="ternary"|"int8"|"fp", acts=True, granularity="channel"|"layer",
scope="all"|"blocks")`` swaps the linear layers of a ``sw.models`` model for ``QuantLinear`` /
``QuantConv2d`` and attaches int8 fake quantizers to its ``QuantPoint`` modules.
See docs/training.md and docs/numerics.md.
"""
from .acts import (ActQuantizer, SoftmaxQuantizer, dequantize_tensor, qparams_from_range,
                   quantize_tensor)
from .layers import QuantConv2d, QuantLinear
from .prepare import act_quantizers, prepare, quant_layers, set_observers
from .weights import fake_int8, fake_ternary, quantize_int8_per_channel, ternarize

__all__ = ["prepare", "QuantLinear", "QuantConv2d", "ActQuantizer", "SoftmaxQuantizer",
           "ternarize", "quantize_int8_per_channel", "fake_ternary", "fake_int8",
           "quantize_tensor", "dequantize_tensor", "qparams_from_range", "quant_layers",
           "act_quantizers", "set_observers"]
