"""timm-compatible ViT/DeiT and Swin with quantization points, and a registry of model names.

    from sw.models import create_model, model_config, list_models
    model = create_model("vit-fmnist")            # or "deit_small_patch16_224", "swin-fmnist", ...
    load_checkpoint(model, "deit_small.pth")      # timm / DeiT / Swin state dicts, strict
"""
from .checkpoint import load_checkpoint, timm_state_dict
from .quant_point import QuantPoint
from .registry import ModelConfig, UnknownModelError, create_model, list_models, model_config
from .swin import SwinTransformer
from .vit import VisionTransformer

__all__ = [
    "QuantPoint", "VisionTransformer", "SwinTransformer", "create_model", "list_models",
    "model_config", "ModelConfig", "UnknownModelError", "load_checkpoint", "timm_state_dict",
]
