"""Swin Transformer compatible with timm 1.0's `SwinTransformer` (constructor kwargs, state_dict keys).

As in timm 1.0 the PatchMerging of stage i > 0 sits at the START of that stage
(`layers.i.downsample.*`), the head is `head.fc`, and `relative_position_index` / `attn_mask`
are non-persistent buffers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .layers import (Attention, DropPath, Mlp, PatchEmbed, check_image, drop_path_rates,
                     init_linear_weights, to_2tuple, trunc_normal_)
from .quant_point import QuantPoint, named_quant_points
from .vit import reject_unsupported

_UNSUPPORTED = {
    "always_partition": False, "strict_img_size": True, "embed_layer": None, "weight_init": "",
}
MASK_VALUE = -100.0  # timm's value for the shifted-window mask (exp(-100) is 0 in float32 softmax)


def window_partition(x: torch.Tensor, window_size: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, C] -> [B * nW, wh * ww, C], windows in row-major order within each image."""
    B, H, W, C = x.shape
    wh, ww = window_size
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def window_reverse(windows: torch.Tensor, window_size: tuple[int, int], H: int, W: int) -> torch.Tensor:
    """Inverse of window_partition: [B * nW, wh * ww, C] -> [B, H, W, C]."""
    wh, ww = window_size
    C = windows.shape[-1]
    x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def window_order(resolution: tuple[int, int], window_size: tuple[int, int],
                 shift_size: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """[H*W] permutation: windowed token i (window-major, row-major inside) is row-major token
    order[i] of the H x W map, after the cyclic shift by -shift_size (timm's roll + partition)."""
    H, W = resolution
    grid = torch.arange(H * W).view(1, H, W, 1)
    if any(shift_size):
        grid = torch.roll(grid, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    return window_partition(grid, window_size).flatten()


def relative_position_index(win_h: int, win_w: int) -> torch.Tensor:
    """[N, N] index into the (2wh-1)(2ww-1)-row bias table, N = wh*ww (timm's layout)."""
    coords = torch.stack(torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[:, :, 0] + win_h - 1) * (2 * win_w - 1) + (rel[:, :, 1] + win_w - 1)


def shifted_window_mask(resolution: tuple[int, int], window_size: tuple[int, int],
                        shift_size: tuple[int, int]) -> torch.Tensor:
    """[nW, N, N] mask of the shifted windows: 0 within a region, MASK_VALUE across regions."""
    H, W = resolution
    img = torch.zeros(1, H, W, 1)
    region = 0
    for hs in (slice(0, -window_size[0]), slice(-window_size[0], -shift_size[0]), slice(-shift_size[0], None)):
        for ws in (slice(0, -window_size[1]), slice(-window_size[1], -shift_size[1]), slice(-shift_size[1], None)):
            img[:, hs, ws, :] = region
            region += 1
    ids = window_partition(img, window_size).squeeze(-1)  # nW, N
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


class WindowAttention(Attention):
    """Window attention with a relative position bias (timm `WindowAttention`).

    The relative position bias and the shift mask are ONE constant, `attn_bias(mask)` of shape
    [nW or 1, heads, N, N], quantized at `qp_bias` and added to the scores -> `qp_biased`.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None, window_size=7,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop, head_dim, window_bias=True)
        self.window_size = to_2tuple(window_size)
        win_h, win_w = self.window_size
        self.window_area = win_h * win_w
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * win_h - 1) * (2 * win_w - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(win_h, win_w),
                             persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """[heads, N, N] bias gathered from the table."""
        N = self.window_area
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(N, N, -1).permute(2, 0, 1)

    def attn_bias(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The constant added to the scores: bias [1, heads, N, N], plus mask [nW, N, N] if given."""
        bias = self.relative_position_bias().unsqueeze(0)
        return bias if mask is None else bias + mask.unsqueeze(1)

    def add_bias(self, scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bias = self.qp_bias(self.attn_bias(mask))
        num_win, heads, N, _ = bias.shape
        scores = (scores.view(-1, num_win, heads, N, N) + bias).view(-1, heads, N, N)
        return self.qp_biased(scores)


class SwinTransformerBlock(nn.Module):
    """(Shifted) window attention block on [B, H, W, C] (timm `SwinTransformerBlock`).

    As timm, a window at least as large as the resolution becomes the whole resolution and
    then has no shift. The cyclic shift and the window partition are index permutations.
    """

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int = 4,
                 head_dim: int | None = None, window_size=7, shift_size=0, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, proj_drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.input_resolution = to_2tuple(input_resolution)
        window_size, shift_size = to_2tuple(window_size), to_2tuple(shift_size)
        self.window_size = tuple(min(r, w) for r, w in zip(self.input_resolution, window_size))
        self.shift_size = tuple(0 if r <= w else s
                                for r, w, s in zip(self.input_resolution, self.window_size, shift_size))
        if any(r % w for r, w in zip(self.input_resolution, self.window_size)):
            raise ValueError(f"resolution {self.input_resolution} is not a multiple of window {self.window_size}"
                             " (padding is not supported)")
        self.norm1 = norm_layer(dim)
        self.qp_norm1 = QuantPoint()
        self.attn = WindowAttention(dim, num_heads, head_dim, self.window_size, qkv_bias, attn_drop, proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.qp_res1 = QuantPoint()
        self.norm2 = norm_layer(dim)
        self.qp_norm2 = QuantPoint()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.qp_res2 = QuantPoint()
        mask = (shifted_window_mask(self.input_resolution, self.window_size, self.shift_size)
                if any(self.shift_size) else None)
        self.register_buffer("attn_mask", mask, persistent=False)
        order = window_order(self.input_resolution, self.window_size, self.shift_size)
        self.register_buffer("window_order", order, persistent=False)
        self.register_buffer("window_order_inverse", torch.argsort(order), persistent=False)

    def attn_bias(self) -> torch.Tensor:
        """This block's score constant (float): relative position bias + shift mask, [nW|1, heads, N, N]."""
        return self.attn.attn_bias(self.attn_mask)

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        """Cyclic shift + window partition as one gather (`window_order`), attention, and back."""
        B, H, W, C = x.shape
        windows = x.reshape(B, H * W, C).index_select(1, self.window_order)
        windows = self.attn(windows.view(-1, self.attn.window_area, C), mask=self.attn_mask)
        x = windows.reshape(B, H * W, C).index_select(1, self.window_order_inverse)
        return x.view(B, H, W, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.qp_res1(x + self.drop_path1(self._attn(self.qp_norm1(self.norm1(x)))))
        return self.qp_res2(x + self.drop_path2(self.mlp(self.qp_norm2(self.norm2(x)))))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat -> LayerNorm (`qp_norm`) -> Linear without bias (`qp_out`).

    Concat order is timm's: (h0,w0), (h1,w0), (h0,w1), (h1,w1).
    """

    def __init__(self, dim: int, out_dim: int | None = None,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.norm = norm_layer(4 * dim)
        self.qp_norm = QuantPoint()
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)
        self.qp_out = QuantPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.qp_out(self.reduction(self.qp_norm(self.norm(x))))


class SwinTransformerStage(nn.Module):
    """Optional PatchMerging (stages > 0) then `depth` blocks alternating plain/shifted windows."""

    def __init__(self, dim: int, out_dim: int, input_resolution: tuple[int, int], depth: int,
                 downsample: bool, num_heads: int, head_dim: int | None, window_size,
                 mlp_ratio: float, qkv_bias: bool, proj_drop: float, attn_drop: float,
                 drop_path: Sequence[float], norm_layer: Callable[[int], nn.Module]):
        super().__init__()
        self.input_resolution = to_2tuple(input_resolution)
        if downsample and any(r % 2 for r in self.input_resolution):
            raise ValueError(f"patch merging needs an even resolution, got {self.input_resolution}")
        self.output_resolution = (tuple(r // 2 for r in self.input_resolution) if downsample
                                  else self.input_resolution)
        window_size = to_2tuple(window_size)
        shift_size = tuple(w // 2 for w in window_size)
        if downsample:
            self.downsample = PatchMerging(dim, out_dim, norm_layer)
        else:
            if dim != out_dim:
                raise ValueError(f"stage without downsample needs dim == out_dim, got {dim} and {out_dim}")
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[
            SwinTransformerBlock(out_dim, self.output_resolution, num_heads, head_dim, window_size,
                                 0 if i % 2 == 0 else shift_size, mlp_ratio, qkv_bias, proj_drop,
                                 attn_drop, drop_path[i], norm_layer)
            for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ClassifierHead(nn.Module):
    """Dropout then `fc` (timm's `ClassifierHead` keys: `head.fc.*`); pooling is in the model."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


def _per_stage(value, n: int, what: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{what} has {len(value)} entries for {n} stages")
        return tuple(value)
    return (value,) * n


class SwinTransformer(nn.Module):
    """Swin Transformer with timm 1.0's constructor arguments and state_dict keys.

    Loads timm Swin checkpoints with strict=True (original Microsoft checkpoints through
    `sw.models.load_checkpoint`, which renames their keys as timm does). Every int8 tensor of
    the integer graph passes through a named QuantPoint (docs/numerics.md); identities in float.
    Each stage resolution must be a multiple of its window (no padding), as in the 224 models.
    """

    def __init__(self, img_size=224, patch_size=4, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = "avg", embed_dim: int = 96, depths=(2, 2, 6, 2),
                 num_heads=(3, 6, 12, 24), head_dim=None, window_size=7, mlp_ratio=4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, proj_drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 norm_layer: Callable[[int], nn.Module] | None = None, **timm_options):
        super().__init__()
        reject_unsupported(type(self).__name__, timm_options, _UNSUPPORTED)
        if global_pool != "avg":
            raise ValueError(f"unsupported global_pool {global_pool!r} (only 'avg')")
        norm_layer = norm_layer or nn.LayerNorm
        num_layers = len(depths)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_layers = num_layers
        dims = ([int(d) for d in embed_dim] if isinstance(embed_dim, (tuple, list))
                else [int(embed_dim * 2 ** i) for i in range(num_layers)])
        self.embed_dim = dims[0]
        self.num_features = dims[-1]
        if isinstance(window_size, (tuple, list)) and len(window_size) == 2:
            window_size = (tuple(window_size),) * num_layers  # a (h, w) pair for every stage, as timm
        window_size = _per_stage(window_size, num_layers, "window_size")
        num_heads = _per_stage(num_heads, num_layers, "num_heads")
        head_dim = _per_stage(head_dim, num_layers, "head_dim")
        mlp_ratio = _per_stage(mlp_ratio, num_layers, "mlp_ratio")

        self.qp_input = QuantPoint()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, dims[0], norm_layer, output_fmt="NHWC")
        self.img_size = self.patch_embed.img_size
        dpr = drop_path_rates(drop_path_rate, sum(depths))
        layers, resolution, in_dim, start = [], self.patch_embed.grid_size, dims[0], 0
        for i in range(num_layers):
            stage = SwinTransformerStage(
                in_dim, dims[i], resolution, depths[i], i > 0, num_heads[i], head_dim[i],
                window_size[i], mlp_ratio[i], qkv_bias, proj_drop_rate, attn_drop_rate,
                dpr[start:start + depths[i]], norm_layer)
            layers.append(stage)
            resolution, in_dim, start = stage.output_resolution, dims[i], start + depths[i]
        self.layers = nn.Sequential(*layers)
        self.norm = norm_layer(self.num_features)
        self.qp_norm = QuantPoint()
        self.qp_pool = QuantPoint()
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        self.qp_head = QuantPoint() if num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """timm's init: trunc-normal(0.02) linears and relative position bias tables."""
        self.apply(init_linear_weights)
        for m in self.modules():
            if isinstance(m, WindowAttention):
                trunc_normal_(m.relative_position_bias_table, std=0.02)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh one for `num_classes` classes (0: no head)."""
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.qp_head = QuantPoint() if num_classes > 0 else nn.Identity()
        self.head.apply(init_linear_weights)

    quant_points = named_quant_points

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, C, H, W] -> normalised features [B, H', W', num_features]."""
        check_image(x, self.in_chans, self.img_size)
        x = self.layers(self.patch_embed(self.qp_input(x)))
        return self.qp_norm(self.norm(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> mean over tokens (`qp_pool`) -> logits (pooled features with pre_logits=True)."""
        x = self.qp_pool(x.mean(dim=(1, 2)))
        return self.head.drop(x) if pre_logits else self.qp_head(self.head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
