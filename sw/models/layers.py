"""Building blocks shared by the ViT and Swin models (timm 1.0 names, plain torch layers)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .quant_point import QuantPoint

# Lowest score (real value) kept by the int8 tensors that carry Swin's shift mask: after the
# int8 softmax exp(-16) is 0, so a masked entry saturated here is still fully masked.
MASK_FLOOR = -16.0


def to_2tuple(x) -> tuple[int, int]:
    """`x` as a pair: an int is repeated, a pair is kept."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"expected an int or a pair, got {x!r}")
        return int(x[0]), int(x[1])
    return int(x), int(x)


def check_image(x: torch.Tensor, in_chans: int, img_size: tuple[int, int]) -> None:
    """Raise a one-line ValueError unless `x` is a float batch [B, in_chans, H, W] of the model's size."""
    want = (in_chans, *img_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"expected an image batch of shape [B, {want[0]}, {want[1]}, {want[2]}], "
                         f"got {list(x.shape)}")


def trunc_normal_(t: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """timm's default init: normal(0, std) truncated at +-2 (absolute, as timm's trunc_normal_)."""
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2.0, b=2.0)


def init_linear_weights(module: nn.Module) -> None:
    """timm's init for ViT/Swin: Linear weights trunc-normal(0.02), biases zero; LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with drop_prob 0)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class PatchEmbed(nn.Module):
    """Image to patch tokens with a Conv2d (kernel = stride = patch): timm's `PatchEmbed`.

    output_fmt "NLC" gives [B, H*W, C] tokens (ViT); "NHWC" gives [B, H, W, C] (Swin).
    With a norm_layer (Swin) the projection is quantized at `qp_out` and the LayerNorm at
    `qp_norm`; without one (ViT) the model quantizes the tokens after the class token concat.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768,
                 norm_layer: Callable[[int], nn.Module] | None = None, output_fmt: str = "NLC"):
        super().__init__()
        if output_fmt not in ("NLC", "NHWC"):
            raise ValueError(f"unknown output_fmt {output_fmt!r} (NLC | NHWC)")
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        if any(i % p for i, p in zip(self.img_size, self.patch_size)):
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.output_fmt = output_fmt
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        if norm_layer is not None:
            self.qp_out = QuantPoint()
            self.norm = norm_layer(embed_dim)
            self.qp_norm = QuantPoint()
        else:
            self.norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).permute(0, 2, 3, 1)  # B, H, W, C
        if self.output_fmt == "NLC":
            x = x.flatten(1, 2)
        if self.norm is not None:
            x = self.qp_norm(self.norm(self.qp_out(x)))
        return x


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm `Mlp`), quantized at `qp_fc1`, `qp_act`, `qp_fc2`."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.qp_fc1 = QuantPoint()
        self.act = nn.GELU()
        self.qp_act = QuantPoint()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.qp_fc2 = QuantPoint()
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.qp_act(self.act(self.qp_fc1(self.fc1(x)))))
        return self.drop2(self.qp_fc2(self.fc2(x)))


class Attention(nn.Module):
    """Multi-head self-attention written out op by op (no fused kernel), timm names.

    scores = (q * scale) @ k^T -> `qp_scores`; [+ bias -> `qp_biased` for window attention];
    softmax -> `qp_softmax` (kind "softmax"); @ v -> `qp_ctx`; proj -> `qp_proj`.
    The qkv output is quantized once (`qp_qkv`) before the split into q, k, v.
    `window_bias=True` registers `qp_bias` and `qp_biased` (used by Swin's WindowAttention)
    in forward order.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, head_dim: int | None = None, window_bias: bool = False):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        attn_dim = head_dim * num_heads
        self.qkv = nn.Linear(dim, attn_dim * 3, bias=qkv_bias)
        self.qp_qkv = QuantPoint()
        self.qp_scores = QuantPoint()
        if window_bias:
            # The shift mask (-100) saturates at MASK_FLOOR instead of stretching the int8 range.
            self.qp_bias = QuantPoint(floor=MASK_FLOOR)
            self.qp_biased = QuantPoint(floor=MASK_FLOOR)
        self.qp_softmax = QuantPoint("softmax")
        self.attn_drop = nn.Dropout(attn_drop)
        self.qp_ctx = QuantPoint()
        self.proj = nn.Linear(attn_dim, dim)
        self.qp_proj = QuantPoint()
        self.proj_drop = nn.Dropout(proj_drop)

    def add_bias(self, scores: torch.Tensor) -> torch.Tensor:
        """Hook for window attention: add the position bias (+ mask) to the scores."""
        return scores

    def forward(self, x: torch.Tensor, **bias_args) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qp_qkv(self.qkv(x))
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = self.qp_scores((q * self.scale) @ k.transpose(-2, -1))
        scores = self.add_bias(scores, **bias_args)
        p = self.attn_drop(self.qp_softmax(scores.softmax(dim=-1)))
        ctx = self.qp_ctx(p @ v)
        ctx = ctx.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)
        return self.proj_drop(self.qp_proj(self.proj(ctx)))


def drop_path_rates(drop_path_rate: float, n: int) -> list[float]:
    """Linearly increasing stochastic-depth rates over `n` blocks, 0 to drop_path_rate (timm)."""
    return [drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
