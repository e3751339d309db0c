"""Loading timm / DeiT / Swin checkpoints into sw.models (key renames as timm's checkpoint filters)."""
from __future__ import annotations

import os
import re
from typing import Mapping

import torch
from torch import nn

# Buffers that timm recomputes and does not store (the original Swin code saved them).
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def timm_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """timm key names from a timm, DeiT (`{"model": ...}`) or original Swin checkpoint dict.

    Unwraps "model" / "state_dict", drops derived Swin buffers, and renames original Swin keys
    as timm's checkpoint_filter_fn does (`layers.N.downsample` -> `layers.N+1.downsample`,
    `head.*` -> `head.fc.*`). timm-format dicts come back unchanged.
    """
    for wrapper in ("model", "state_dict"):
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
    is_swin = any("relative_position_bias_table" in k for k in checkpoint)
    old_swin = is_swin and "head.fc.weight" not in checkpoint and "head.weight" in checkpoint
    out = {}
    for key, value in checkpoint.items():
        if any(key.endswith(b) for b in _DERIVED_BUFFERS):
            continue
        if old_swin:
            key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
            key = re.sub(r"^head\.", "head.fc.", key)
        out[key] = value
    return out


def load_checkpoint(model: nn.Module, checkpoint, strict: bool = True) -> nn.Module:
    """Load a checkpoint (a path, or an already loaded dict) into `model`, strict by default.

    Files are read with torch.load(weights_only=True): no pickled code runs. Raises ValueError
    with one line naming the missing / unexpected / mis-shaped keys when it does not fit.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ValueError(f"checkpoint not found: {checkpoint}") from None
        except Exception as e:  # unpickling errors, truncated files
            raise ValueError(f"cannot read checkpoint {checkpoint}: {str(e).splitlines()[0]}") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a checkpoint must be a state dict, got {type(checkpoint).__name__}")
    state = timm_state_dict(checkpoint)
    own = model.state_dict()
    bad_shapes = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if bad_shapes:
        problems.append("shape mismatch: " + ", ".join(bad_shapes[:5]) + (" ..." if len(bad_shapes) > 5 else ""))
    if strict and missing:
        problems.append(f"missing {len(missing)} keys: " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if strict and unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: " + ", ".join(unexpected[:5])
                        + (" ..." if len(unexpected) > 5 else ""))
    if problems:
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    return model
