"""ViT / DeiT compatible with timm 1.0's `VisionTransformer` (constructor kwargs and state_dict keys)."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from .layers import (Attention, DropPath, Mlp, PatchEmbed, check_image, drop_path_rates,
                     init_linear_weights, trunc_normal_)
from .quant_point import QuantPoint, named_quant_points

# timm options that this implementation does not have, with the only value it accepts.
_UNSUPPORTED = {
    "qk_norm": False, "init_values": None, "pos_embed": "learn", "no_embed_class": False,
    "reg_tokens": 0, "pre_norm": False, "final_norm": True, "fc_norm": None,
    "dynamic_img_size": False, "dynamic_img_pad": False, "patch_drop_rate": 0.0,
    "act_layer": None, "embed_layer": None, "block_fn": None, "mlp_layer": None,
    "weight_init": "", "fix_init": False,
}


def reject_unsupported(cls_name: str, options: dict, supported_defaults: dict) -> None:
    """Raise a one-line error for timm keyword arguments this model does not implement."""
    for key, value in options.items():
        if key not in supported_defaults:
            raise TypeError(f"{cls_name}() got an unexpected keyword argument {key!r}")
        if value != supported_defaults[key]:
            raise ValueError(f"{cls_name}: timm option {key}={value!r} is not supported by sw.models "
                             f"(only {key}={supported_defaults[key]!r})")


class Block(nn.Module):
    """Pre-norm transformer block (timm `Block`), quantized at qp_norm1/qp_res1/qp_norm2/qp_res2."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.qp_norm1 = QuantPoint()
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.qp_res1 = QuantPoint()
        self.norm2 = norm_layer(dim)
        self.qp_norm2 = QuantPoint()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.qp_res2 = QuantPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.qp_res1(x + self.drop_path1(self.attn(self.qp_norm1(self.norm1(x)))))
        return self.qp_res2(x + self.drop_path2(self.mlp(self.qp_norm2(self.norm2(x)))))


class VisionTransformer(nn.Module):
    """ViT / DeiT with timm 1.0's constructor arguments and state_dict keys.

    Loads timm and DeiT checkpoints with strict=True. Attention is written out op by op and every
    int8 tensor of the integer graph (docs/numerics.md) passes through a named QuantPoint;
    in float mode those are identities, so the model computes what timm computes.
    global_pool: "token" (class token, the integer graph's choice) or "avg" (mean over patch
    tokens -> qp_pool, then fc_norm -> qp_norm). Options timm has but this model lacks (layer
    scale, register tokens, qk norm, ...) raise a ValueError when set to a non-default value.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = "token", embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 class_token: bool = True, drop_rate: float = 0.0, pos_drop_rate: float = 0.0,
                 proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, norm_layer: Callable[[int], nn.Module] | None = None,
                 **timm_options):
        super().__init__()
        reject_unsupported(type(self).__name__, timm_options, _UNSUPPORTED)
        if global_pool not in ("token", "avg"):
            raise ValueError(f"unknown global_pool {global_pool!r} (token | avg)")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if class_token else 0

        self.qp_input = QuantPoint()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.img_size = self.patch_embed.img_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.qp_tokens = QuantPoint()
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens,
                                                  embed_dim))
        self.qp_pos = QuantPoint()
        self.qp_embed = QuantPoint()
        self.pos_drop = nn.Dropout(pos_drop_rate)
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, proj_drop=proj_drop_rate,
                  attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer)
            for i in range(depth)])
        use_fc_norm = global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else norm_layer(embed_dim)
        if use_fc_norm:
            self.qp_pool = QuantPoint()
        self.fc_norm = norm_layer(embed_dim) if use_fc_norm else nn.Identity()
        self.qp_norm = QuantPoint()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.qp_head = QuantPoint() if num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """timm's 'jax'-free default init: trunc-normal(0.02) linears and pos_embed, tiny cls token."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(init_linear_weights)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh one for `num_classes` classes (0: no head)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.qp_head = QuantPoint() if num_classes > 0 else nn.Identity()
        self.head.apply(init_linear_weights)

    quant_points = named_quant_points

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, C, H, W] -> token features [B, tokens, embed_dim] after the last block."""
        check_image(x, self.in_chans, self.img_size)
        x = self.patch_embed(self.qp_input(x))
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.qp_embed(self.qp_tokens(x) + self.qp_pos(self.pos_embed))
        x = self.blocks(self.pos_drop(x))
        if self.global_pool == "token":
            x = self.qp_norm(self.norm(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Token features -> logits (or the pooled, normalised features with pre_logits=True)."""
        if self.global_pool == "token":
            x = x[:, 0]
        else:
            x = self.qp_norm(self.fc_norm(self.qp_pool(x[:, self.num_prefix_tokens:].mean(dim=1))))
        x = self.head_drop(x)
        return x if pre_logits else self.qp_head(self.head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
