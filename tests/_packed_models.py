"""Shared builders for the pack / graph tests (no tests here): the timm fixtures, prepared
ternary, calibrated on 128 images, packed with 4 goldens."""
import functools
import json
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "timm"
if not FIXTURES.exists():
    FIXTURES = Path("/work/shared/fixtures/timm")
MEAN_STD = {1: ((0.2860,), (0.3530,)), 3: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def fixture_images(n, C, H, W, seed):
    """Fashion-MNIST test images for 1x28x28, smooth synthetic ones otherwise."""
    from sw import pack
    if (C, H, W) == (1, 28, 28):
        from sw.data import load_dataset
        images = load_dataset("fashion-mnist", "test")[0]
        return images[np.random.default_rng(seed).permutation(len(images))[:n]]
    return pack.synthetic_images(n, C, H, W, seed=seed)


@functools.lru_cache(maxsize=None)
def packed_fixture(name, multiplier_bits=None):
    """(torch model (prepared, calibrated, eval), sw.tvt.Model, mean, std, test images uint8);
    multiplier_bits: sw.pack's default if None."""
    from sw import pack
    from sw.models import SwinTransformer, VisionTransformer
    from sw.quant import prepare
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    cls = {"VisionTransformer": VisionTransformer, "SwinTransformer": SwinTransformer}[meta["timm_class"]]
    torch.manual_seed(0)
    model = cls(**meta["kwargs"])
    model.load_state_dict(torch.load(FIXTURES / f"{name}.pth", weights_only=True))
    prepare(model, weights="ternary")
    C, H, W = model.in_chans, *model.img_size
    mean, std = MEAN_STD[C]
    calib = fixture_images(128, C, H, W, seed=1)
    pack.calibrate(model, calib, mean, std)
    test = fixture_images(200, C, H, W, seed=2)
    packed = pack.pack_model(model, name, mean, std, golden_images=test[:4],
                             multiplier_bits=multiplier_bits or pack.MULTIPLIER_BITS)
    return model, packed, mean, std, test


@functools.lru_cache(maxsize=None)
def packed_registry(arch):
    """Like packed_fixture for a registered model name with random init (calibrated on data)."""
    from sw import pack
    from sw.models import create_model, model_config
    from sw.quant import prepare
    torch.manual_seed(0)
    cfg = model_config(arch)
    model = prepare(create_model(arch), weights="ternary")
    C, H, W = cfg.input_size
    pack.calibrate(model, fixture_images(64, C, H, W, seed=1), cfg.mean, cfg.std)
    test = fixture_images(32, C, H, W, seed=2)
    packed = pack.pack_model(model, arch, cfg.mean, cfg.std, golden_images=test[:2])
    return model, packed, cfg.mean, cfg.std, test
