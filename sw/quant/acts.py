"""Activation fake quantizers attached to ``sw.models.quant_point.QuantPoint`` modules.

Per-tensor asymmetric int8, ``real = scale * (q - zero_point)``, ``q`` in [-128, 127].
Quantize: ``q = clamp(round(x / scale) + zero_point, -128, 127)`` where ``round`` is
``torch.round`` = round half to even (``numpy.rint`` / ``numpy.round`` give the same).
"""
import torch
from torch import nn

QMIN, QMAX = -128, 127


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor):
    """(scale, zero_point) covering ``[min(lo, 0), max(hi, 0)]`` with 256 levels; 0 is exact.

    ``scale = (hi' - lo') / 255`` (at least 1e-8), ``zero_point = clamp(round(-128 - lo' / scale))``.
    """
    lo = torch.clamp(lo.detach().float(), max=0.0)
    hi = torch.clamp(hi.detach().float(), min=0.0)
    scale = (hi - lo) / float(QMAX - QMIN)
    scale = torch.clamp(scale, min=1e-8)  # an all-zero (or tiny) range still gets a usable scale
    zp = torch.clamp(torch.round(QMIN - lo / scale), QMIN, QMAX).to(torch.int32)
    return scale, zp


def quantize_tensor(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Real -> int8 codes: ``clamp(round(x / scale) + zp, -128, 127)`` (round half to even)."""
    return torch.clamp(torch.round(x / scale) + zero_point, QMIN, QMAX).to(torch.int8)


def dequantize_tensor(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """int8 codes -> real: ``scale * (q - zp)``."""
    return scale * (q.float() - zero_point.float())


class _FakeQuantSTE(torch.autograd.Function):
    """``scale * (clamp(round(x / scale) + zp) - zp)``; gradient passes where ``q`` was not clamped."""

    @staticmethod
    def forward(ctx, x, scale, zero_point):
        y = torch.div(x, scale).round_().add_(zero_point)
        inside = (y >= QMIN) & (y <= QMAX)
        y.clamp_(QMIN, QMAX).sub_(zero_point).mul_(scale)
        ctx.save_for_backward(inside)
        return y

    @staticmethod
    def backward(ctx, grad):
        inside, = ctx.saved_tensors
        return grad * inside, None, None


class _FakeQuant(nn.Module):
    """Common part: buffers ``scale`` (float32 scalar) and ``zero_point`` (int32 scalar), STE."""

    def __init__(self, scale: float = 1.0, zero_point: int = 0):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("zero_point", torch.tensor(int(zero_point), dtype=torch.int32))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """int8 codes of ``x`` with this quantizer's (scale, zero_point)."""
        return quantize_tensor(x, self.scale, self.zero_point)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        return dequantize_tensor(q, self.scale, self.zero_point)

    def fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(x))`` forward; straight-through gradient (1 where the code was
        not clamped, 0 where it was)."""
        return _FakeQuantSTE.apply(x, self.scale.to(x.dtype), self.zero_point.to(x.dtype))


class ActQuantizer(_FakeQuant):
    """Per-tensor asymmetric int8 with a running min/max observer (EMA).

    While ``observe`` is True and the module is in training mode, each forward updates the
    running range (the first batch sets it, later ones move it by ``momentum``) and recomputes
    ``scale`` / ``zero_point``; in eval mode, or after ``freeze()``, they are constant.
    With ``enabled = False`` the quantizer only observes and passes ``x`` through (calibration).
    ``floor``: values below it are not observed (they saturate at code -128).
    """

    def __init__(self, momentum: float = 0.01, floor: float | None = None):
        super().__init__()
        self.momentum = momentum
        self.floor = floor
        self.observe = True
        self.enabled = True
        # min > max means "nothing observed yet"
        self.register_buffer("running_min", torch.tensor(float("inf")))
        self.register_buffer("running_max", torch.tensor(float("-inf")))

    @property
    def observed(self) -> bool:
        """True once a batch has set the running range."""
        return bool(self.running_min <= self.running_max)

    def freeze(self):
        self.observe = False
        return self

    @torch.no_grad()
    def _update(self, x: torch.Tensor):
        x = x.detach().float()
        if self.floor is not None:
            x = x.clamp(min=self.floor)
        lo, hi = torch.aminmax(x)
        if not self.observed:
            self.running_min.copy_(lo)
            self.running_max.copy_(hi)
        else:
            self.running_min.lerp_(lo, self.momentum)
            self.running_max.lerp_(hi, self.momentum)
        s, zp = qparams_from_range(self.running_min, self.running_max)
        self.scale.copy_(s)
        self.zero_point.copy_(zp)

    def forward(self, x):
        if self.training and self.observe:
            self._update(x)
        if not self.enabled:
            return x
        return self.fake_quant(x)

    def extra_repr(self):
        return f"scale={float(self.scale):.6g}, zero_point={int(self.zero_point)}, observe={self.observe}"


class SoftmaxQuantizer(_FakeQuant):
    """Fixed ``scale = 1/256``, ``zero_point = -128`` (TFLite's int8 SOFTMAX output)."""

    def __init__(self):
        super().__init__(1.0 / 256.0, -128)
        self.enabled = True

    def forward(self, x):
        return self.fake_quant(x) if self.enabled else x

    def extra_repr(self):
        return "scale=1/256, zero_point=-128"
