"""``prepare``: turn a float model into a fake-quantized one, in place."""
from torch import nn

from .acts import ActQuantizer, SoftmaxQuantizer
from .layers import QuantConv2d, QuantLinear, _QuantWeightMixin

WEIGHT_MODES = ("ternary", "int8", "fp")
SCOPES = ("all", "blocks")
# Layers outside the transformer blocks (timm names): kept full precision with scope="blocks".
OUTSIDE_BLOCKS = ("patch_embed", "head")


def _outside_blocks(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUTSIDE_BLOCKS)


def _set_child(model: nn.Module, name: str, child: nn.Module):
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, child)


def prepare(model: nn.Module, weights: str = "ternary", acts: bool = True,
            granularity: str = "channel", scope: str = "all") -> nn.Module:
    """Swap every nn.Linear / nn.Conv2d for QuantLinear / QuantConv2d and attach act quantizers.

    weights: "ternary" | "int8" | "fp" for the weights of every linear layer (patch embedding
    and head included with scope="all"; with scope="blocks" those two stay "fp").
    acts: attach an int8 fake quantizer to every QuantPoint (``ActQuantizer``, or
    ``SoftmaxQuantizer`` for kind "softmax"); False removes them.
    Calling prepare again on a prepared model changes the modes and keeps existing activation
    quantizers (and their calibration), so a progressive schedule can step fp -> int8 -> ternary.
    Returns the model (modified in place).
    """
    from sw.models.quant_point import QuantPoint

    if weights not in WEIGHT_MODES:
        raise ValueError(f"unknown weights {weights!r} (one of {', '.join(WEIGHT_MODES)})")
    if granularity not in ("channel", "layer"):
        raise ValueError(f"unknown granularity {granularity!r} (channel | layer)")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (all | blocks)")
    for name, m in list(model.named_modules()):
        mode = "fp" if scope == "blocks" and _outside_blocks(name) else weights
        if isinstance(m, _QuantWeightMixin):
            m.set_quant(mode, granularity)
        elif isinstance(m, nn.Linear):
            _set_child(model, name, QuantLinear.from_linear(m, mode, granularity))
        elif isinstance(m, nn.Conv2d):
            _set_child(model, name, QuantConv2d.from_conv(m, mode, granularity))
        elif isinstance(m, QuantPoint):
            if not acts:
                m.quantizer = None
            elif m.quantizer is None:
                m.quantizer = SoftmaxQuantizer() if m.kind == "softmax" else ActQuantizer(floor=m.floor)
    # keep the new quantizers on the model's device
    p = next(model.parameters(), None)
    if p is not None:
        model.to(p.device)
    return model


def quant_layers(model: nn.Module):
    """``(name, module)`` of every QuantLinear / QuantConv2d in the model, in order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _QuantWeightMixin)]


def act_quantizers(model: nn.Module):
    """``(name, quantizer)`` of every quantizer attached to a QuantPoint."""
    from sw.models.quant_point import QuantPoint
    return [(n, m.quantizer) for n, m in model.named_modules()
            if isinstance(m, QuantPoint) and m.quantizer is not None]


def set_observers(model: nn.Module, observe: bool = True, enabled: bool = True):
    """Turn the running-range observers on/off and fake quant on/off for every ActQuantizer."""
    for _, q in act_quantizers(model):
        if isinstance(q, ActQuantizer):
            q.observe = observe
        q.enabled = enabled
