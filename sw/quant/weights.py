"""Weight quantizers: TWN ternarization (channel- or layer-wise) and 8-bit per-channel fake quant.

All functions take a 2-D weight ``[O, K]`` (a conv weight is flattened as ``C, kh, kw``) and
return either integer codes with scales (for the packer) or a fake-quantized float tensor with a
straight-through estimator (for training).
"""
import torch

TWN_DELTA = 0.7  # delta = 0.7 * mean|W| (Li & Liu, "Ternary Weight Networks")


def ternarize(w2d: torch.Tensor, granularity: str = "channel"):
    """TWN ternarization of a ``[O, K]`` weight.

    Channel-wise (TerViT): per output channel ``delta_o = 0.7 * mean|W_o|`` and
    ``alpha_o = mean(|W_o[k]| : |W_o[k]| > delta_o)``. Layer-wise: one delta and one alpha for
    the whole tensor (returned repeated per channel). A channel with no weight above delta gets
    all-zero trits and alpha 0. Returns ``(trits int8 [O, K], alpha float32 [O])``.
    """
    if w2d.dim() != 2:
        raise ValueError(f"ternarize wants a 2-D [O, K] weight, got shape {tuple(w2d.shape)}")
    w = w2d.detach().float()
    a = w.abs()
    if granularity == "channel":
        delta = TWN_DELTA * a.mean(dim=1, keepdim=True)
        mask = a > delta
        count = mask.sum(dim=1)
        alpha = (a * mask).sum(dim=1) / count.clamp(min=1)
    elif granularity == "layer":
        delta = TWN_DELTA * a.mean()
        mask = a > delta
        alpha = ((a * mask).sum() / mask.sum().clamp(min=1)).expand(w.shape[0]).clone()
    else:
        raise ValueError(f"unknown granularity {granularity!r} (channel | layer)")
    trits = (torch.sign(w) * mask).to(torch.int8)
    return trits, alpha


def quantize_int8_per_channel(w2d: torch.Tensor):
    """Symmetric per-output-channel int8: ``s_o = max|W_o| / 127``, ``q = clamp(round(W/s), -127, 127)``.

    Rounding is torch.round (half to even). Returns ``(q int8 [O, K], scale float32 [O])``.
    """
    w = w2d.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


def _ste(w: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
    """Forward ``w_hat``, backward identity to ``w`` (straight-through estimator)."""
    return w + (w_hat - w).detach()


def fake_ternary(w: torch.Tensor, granularity: str = "channel") -> torch.Tensor:
    """``alpha * trits`` in the shape of ``w`` (any rank, output channels first), with STE."""
    trits, alpha = ternarize(w.reshape(w.shape[0], -1), granularity)
    w_hat = (trits.to(w.dtype) * alpha.to(w.dtype)[:, None]).reshape(w.shape)
    return _ste(w, w_hat)


def fake_int8(w: torch.Tensor) -> torch.Tensor:
    """Per-channel symmetric int8 fake quant of ``w`` (output channels first), with STE."""
    q, scale = quantize_int8_per_channel(w.reshape(w.shape[0], -1))
    w_hat = (q.to(w.dtype) * scale.to(w.dtype)[:, None]).reshape(w.shape)
    return _ste(w, w_hat)
