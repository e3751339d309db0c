"""Model names -> constructor kwargs and input normalisation (timm's configs plus the project's)."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)


class UnknownModelError(ValueError):
    """A model name that the registry does not know; the message lists the known names."""


@dataclass(frozen=True)
class ModelConfig:
    """One registered model: its family ("vit" | "swin"), constructor kwargs, input normalisation."""

    name: str
    family: str
    kwargs: dict = field(default_factory=dict)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, height, width) the model expects."""
        img = self.kwargs.get("img_size", 224)
        h, w = (img, img) if isinstance(img, int) else img
        return self.kwargs.get("in_chans", 3), h, w


_CONFIGS: dict[str, ModelConfig] = {}


def _register(name: str, family: str, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs) -> None:
    _CONFIGS[name] = ModelConfig(name, family, kwargs, tuple(mean), tuple(std))


# timm 1.0's model_args for these names (the other arguments keep the classes' defaults).
_register("deit_tiny_patch16_224", "vit", patch_size=16, embed_dim=192, depth=12, num_heads=3)
_register("deit_small_patch16_224", "vit", patch_size=16, embed_dim=384, depth=12, num_heads=6)
_register("deit_base_patch16_224", "vit", patch_size=16, embed_dim=768, depth=12, num_heads=12)
_register("swin_tiny_patch4_window7_224", "swin", patch_size=4, window_size=7, embed_dim=96,
          depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_register("swin_small_patch4_window7_224", "swin", patch_size=4, window_size=7, embed_dim=96,
          depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_register("swin_base_patch4_window7_224", "swin", patch_size=4, window_size=7, embed_dim=128,
          depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
# The project's small Fashion-MNIST models (1x28x28, 10 classes).
_register("vit-fmnist", "vit", FMNIST_MEAN, FMNIST_STD, img_size=28, patch_size=7, in_chans=1,
          num_classes=10, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
# 14x14 tokens; stage 0: 2x2 windows of 7x7 with a shifted block; stage 1: patch merging to 7x7.
_register("swin-fmnist", "swin", FMNIST_MEAN, FMNIST_STD, img_size=28, patch_size=2, in_chans=1,
          num_classes=10, embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=7,
          mlp_ratio=2.0, drop_path_rate=0.0)


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def list_models() -> list[str]:
    """The registered model names."""
    return list(_CONFIGS)


def model_config(name: str) -> ModelConfig:
    """The ModelConfig of `name` ('-' and '_' are interchangeable); UnknownModelError otherwise."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a string, got {type(name).__name__}")
    key = _canonical(name)
    for known, cfg in _CONFIGS.items():
        if _canonical(known) == key:
            return ModelConfig(cfg.name, cfg.family, dict(cfg.kwargs), cfg.mean, cfg.std)
    raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(_CONFIGS)}")


def create_model(name: str, **overrides) -> nn.Module:
    """Build the registered model `name`; `overrides` replace its constructor kwargs
    (e.g. num_classes=10, drop_path_rate=0.1). Weights are freshly initialised."""
    from .swin import SwinTransformer
    from .vit import VisionTransformer

    cfg = model_config(name)
    cls = VisionTransformer if cfg.family == "vit" else SwinTransformer
    return cls(**{**cfg.kwargs, **overrides})
