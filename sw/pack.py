"""Pack a fake-quantized ternary ViT / Swin into an integer-only .tvt file.

    python -m sw.pack CHECKPOINT -o model.tvt
    python -m sw.pack --arch deit_small_patch16_224 --init random -o deit_s.tvt   # size accounting

Reads each QuantPoint's (scale, zero_point) from the calibrated model, ternarizes every linear
layer (channel-wise TWN, `QuantLinear.ternary_weights()`), folds the input zero points into
int32 biases, computes per-channel requantization multipliers, the GELU and softmax tables and
the integer LayerNorm parameters (`sw.ref.ops`), and embeds golden vectors computed by
`sw.ref`. See docs/tvt-format.md and docs/numerics.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from sw import tvt
from sw.ref import ops
from sw.tvt.model import FORMAT_NAME


class PackError(ValueError):
    """The model cannot be packed (not prepared, not calibrated, unsupported option)."""


# Significant bits kept of each linear channel's multiplier m0 (docs/numerics.md): 16 bits are
# 2 bytes a channel in the file and at most a 2^-16 relative error, far below an int8 step.
MULTIPLIER_BITS = 16
MIN_MULTIPLIER_BITS = 8


# ------------------------------------------------------------------------------------------
# Reading the torch model
# ------------------------------------------------------------------------------------------
class _Reader:
    """Access to the torch model's quantizers, weights and modules by name."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.qp_log = {}

    def module(self, name):
        return self.model.get_submodule(name)

    def qp(self, name) -> tuple[float, int]:
        """(scale, zero_point) of QuantPoint `name` (scale as the float32 the model uses)."""
        q = getattr(self.module(name), "quantizer", None)
        if q is None:
            raise PackError(f"QuantPoint {name!r} has no quantizer: prepare and calibrate the model first")
        s, zp = float(np.float32(q.scale.item())), int(q.zero_point.item())
        if not (s > 0 and np.isfinite(s)):
            raise PackError(f"QuantPoint {name!r} has scale {s}: calibrate the model first")
        self.qp_log[name] = [s, zp]
        return s, zp

    def ternary(self, name):
        """(trits int8 [O, K], alpha float64 [O], bias float64 [O] or None) of a linear/conv."""
        m = self.module(name)
        if hasattr(m, "ternary_weights"):
            trits, alpha = m.ternary_weights()
        else:
            from sw.quant import ternarize
            trits, alpha = ternarize(m.weight.detach().reshape(m.weight.shape[0], -1))
        bias = None if m.bias is None else m.bias.detach().double().numpy()
        return trits.numpy().astype(np.int8), alpha.double().numpy(), bias


def quantize_const(x, scale, zp) -> np.ndarray:
    """A float constant to int8 codes exactly as the fake quantizer does (float32, half to even)."""
    from sw.quant import quantize_tensor
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return quantize_tensor(t, torch.tensor(np.float32(scale)), torch.tensor(zp, dtype=torch.int32)).numpy()


# ------------------------------------------------------------------------------------------
# Building the integer model
# ------------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, model: nn.Module, multiplier_bits: int):
        self.r = _Reader(model)
        self.multiplier_bits = multiplier_bits
        self.tensors: dict[str, np.ndarray] = {}
        self.layers: list[dict] = []
        self.ops: list[list[str]] = []
        self.scalars: dict[str, dict[str, int]] = {}

    # -- linear -------------------------------------------------------------------------
    def linear(self, name, in_qp, out_qp):
        s_x, zp_x = self.r.qp(in_qp)
        s_y, zp_y = self.r.qp(out_qp)
        trits, alpha, bias = self.r.ternary(name)
        O, K = trits.shape
        # A channel with no trit above threshold outputs its bias: give it multiplier s_y/s_x.
        alpha_eff = np.where(alpha > 0, alpha, s_y / s_x).astype(np.float32)
        b = np.zeros(O) if bias is None else bias
        bias_q = np.clip(np.rint(b / (s_x * alpha_eff.astype(np.float64))), -(2**31), 2**31 - 1)
        params = ops.LinearParams.from_scales(s_x, zp_x, alpha_eff, s_y, zp_y, trits,
                                              bias_q.astype(np.int64), self.multiplier_bits)
        p = f"lin/{name}/"
        self.tensors[p + "trits"] = trits
        self.tensors[p + "bias"] = params.bias.astype(np.int32)
        self.tensors[p + "m0"] = params.m0.astype(np.int32)
        self.tensors[p + "shift"] = params.shift.astype(np.int32)
        self.layers.append({"name": name, "K": int(K), "O": int(O), "in_zp": zp_x, "out_zp": zp_y,
                            "has_bias": bias is not None})
        self.ops.append(["linear", name])

    # -- other ops ------------------------------------------------------------------------
    def _store(self, name, arrays: dict):
        """Op parameters: scalars into config["op_scalars"], arrays into op/<name>/<key>."""
        for key, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.ndim == 0:
                self.scalars.setdefault(name, {})[key] = int(arr)
                continue
            if arr.dtype.kind in "iu" and arr.dtype.itemsize > 4:
                if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
                    raise PackError(f"op {name!r} parameter {key!r} does not fit in int32")
                arr = arr.astype(np.int32)
            elif arr.dtype == np.bool_:
                arr = arr.astype(np.uint8)
            self.tensors[f"op/{name}/{key}"] = arr

    def layernorm(self, name, in_qp, out_qp):
        norm = self.r.module(name)
        s_x, _ = self.r.qp(in_qp)  # the integer LayerNorm does not depend on the input zero point
        p = ops.LayerNormParams.from_float(
            norm.weight.detach().double().numpy(), norm.bias.detach().double().numpy(),
            float(norm.eps), s_x, *self.r.qp(out_qp))
        self._store(name, p.to_arrays())
        self.ops.append(["layernorm", name])

    def add(self, name, a_qp, b_qp, out_qp):
        p = ops.AddParams.from_scales(*self.r.qp(a_qp), *self.r.qp(b_qp), *self.r.qp(out_qp))
        self._store(name, p.to_arrays())
        self.ops.append(["add", name])

    def matmul(self, name, a_qp, b_qp, out_qp, extra_scale=1.0):
        s_a, zp_a = self.r.qp(a_qp)
        # the attention's 1/sqrt(d) is folded into a's scale (as the exporter does)
        p = ops.MatmulParams.from_scales(s_a * extra_scale, zp_a, *self.r.qp(b_qp), *self.r.qp(out_qp))
        self._store(name, p.to_arrays())
        self.ops.append(["matmul", name])

    def softmax(self, name, in_qp, out_qp):
        s_y, zp_y = self.r.qp(out_qp)
        if (s_y, zp_y) != (1 / 256, -128):
            raise PackError(f"{out_qp} must be a softmax QuantPoint (1/256, -128), got {(s_y, zp_y)}")
        p = ops.SoftmaxParams.from_scales(self.r.qp(in_qp)[0])
        # the exp tables are a function of these three integers (SoftmaxParams.from_multiplier)
        self._store(name, {k: v for k, v in p.to_arrays().items() if k not in ("exp_table", "acc_table")})
        self.ops.append(["softmax", name])

    def gelu(self, name, in_qp, out_qp):
        table = ops.gelu_table(*self.r.qp(in_qp), *self.r.qp(out_qp))
        self._store(name, {"table": np.asarray(table, dtype=np.int8)})
        self.ops.append(["gelu", name])

    def mean(self, name, in_qp, out_qp):
        p = ops.MeanParams.from_scales(*self.r.qp(in_qp), *self.r.qp(out_qp))
        self._store(name, p.to_arrays())
        self.ops.append(["mean", name])

    def const(self, name, value, qp):
        self.tensors[f"const/{name}"] = quantize_const(value, *self.r.qp(qp))

    def compact_window_bias(self, blk, entry):
        """Replace the whole [nW, h, N, N] bias constant by the quantized bias table (and the
        table with the mask added), from which sw.ref rebuilds it, if that is bit-exact."""
        from sw.models.swin import MASK_VALUE
        from sw.ref.graph import window_bias
        a = f"{entry['name']}.attn"
        full = self.tensors.pop(f"const/{a}.bias")
        scale, zp = self.r.qp(f"{a}.qp_bias")
        table = blk.attn.relative_position_bias_table.detach().float().numpy()
        self.tensors[f"const/{a}.bias_table"] = quantize_const(table, scale, zp)
        if any(entry["shift"]):
            self.tensors[f"const/{a}.bias_table_masked"] = quantize_const(
                table + np.float32(MASK_VALUE), scale, zp)
        tmp = type("M", (), {"tensors": self.tensors, "const": lambda _s, n: self.tensors[f"const/{n}"]})()
        try:
            rebuilt = window_bias(tmp, entry, blk.input_resolution)
            ok = rebuilt.shape == full.shape and np.array_equal(rebuilt, full)
        except (IndexError, ValueError):
            ok = False
        if not ok:  # a model whose bias is not table + mask: keep the whole constant
            self.tensors.pop(f"const/{a}.bias_table")
            self.tensors.pop(f"const/{a}.bias_table_masked", None)
            self.tensors[f"const/{a}.bias"] = full

    # -- blocks ---------------------------------------------------------------------------
    def attention(self, a, x_qp, heads, window_bias=None):
        """Attention ops of module `a` (prefix) whose input is QuantPoint x_qp."""
        attn = self.r.module(a)
        self.linear(f"{a}.qkv", x_qp, f"{a}.qp_qkv")
        self.matmul(f"{a}.scores", f"{a}.qp_qkv", f"{a}.qp_qkv", f"{a}.qp_scores",
                    float(attn.scale))
        soft_in = f"{a}.qp_scores"
        if window_bias is not None:
            self.const(f"{a}.bias", window_bias, f"{a}.qp_bias")
            self.add(f"{a}.bias_add", f"{a}.qp_scores", f"{a}.qp_bias", f"{a}.qp_biased")
            soft_in = f"{a}.qp_biased"
        self.softmax(f"{a}.softmax", soft_in, f"{a}.qp_softmax")
        self.matmul(f"{a}.ctx", f"{a}.qp_softmax", f"{a}.qp_qkv", f"{a}.qp_ctx")
        self.linear(f"{a}.proj", f"{a}.qp_ctx", f"{a}.qp_proj")

    def block(self, b, x_qp, heads, window_bias=None) -> str:
        """A pre-norm transformer block; returns the QuantPoint of its output."""
        self.layernorm(f"{b}.norm1", x_qp, f"{b}.qp_norm1")
        self.attention(f"{b}.attn", f"{b}.qp_norm1", heads, window_bias)
        self.add(f"{b}.add1", x_qp, f"{b}.attn.qp_proj", f"{b}.qp_res1")
        self.layernorm(f"{b}.norm2", f"{b}.qp_res1", f"{b}.qp_norm2")
        self.linear(f"{b}.mlp.fc1", f"{b}.qp_norm2", f"{b}.mlp.qp_fc1")
        self.gelu(f"{b}.mlp.act", f"{b}.mlp.qp_fc1", f"{b}.mlp.qp_act")
        self.linear(f"{b}.mlp.fc2", f"{b}.mlp.qp_act", f"{b}.mlp.qp_fc2")
        self.add(f"{b}.add2", f"{b}.qp_res1", f"{b}.mlp.qp_fc2", f"{b}.qp_res2")
        return f"{b}.qp_res2"


def _vit_graph(bld: _Builder, model) -> dict:
    if getattr(model, "global_pool", "token") != "token" or model.cls_token is None:
        raise PackError("the integer ViT graph needs global_pool='token' with a class token")
    pe = model.patch_embed
    bld.linear("patch_embed.proj", "qp_input", "qp_tokens")
    bld.const("cls_token", model.cls_token.detach().reshape(1, -1).numpy(), "qp_tokens")
    bld.const("pos_embed", model.pos_embed.detach()[0].numpy(), "qp_pos")
    bld.add("pos_add", "qp_tokens", "qp_pos", "qp_embed")
    x_qp, blocks = "qp_embed", []
    for i, blk in enumerate(model.blocks):
        heads = int(blk.attn.num_heads)
        x_qp = bld.block(f"blocks.{i}", x_qp, heads)
        blocks.append({"name": f"blocks.{i}", "heads": heads})
    bld.layernorm("norm", x_qp, "qp_norm")
    bld.linear("head", "qp_norm", "qp_head")
    return {"kind": "vit", "patch": list(pe.patch_size), "grid": list(pe.grid_size),
            "embed_dim": int(model.embed_dim), "class_token": True, "head": "head", "blocks": blocks}


def _swin_graph(bld: _Builder, model) -> dict:
    pe = model.patch_embed
    bld.linear("patch_embed.proj", "qp_input", "patch_embed.qp_out")
    bld.layernorm("patch_embed.norm", "patch_embed.qp_out", "patch_embed.qp_norm")
    x_qp, stages = "patch_embed.qp_norm", []
    for i, stage in enumerate(model.layers):
        s = f"layers.{i}"
        down = None
        if not isinstance(getattr(stage, "downsample", None), (type(None), nn.Identity)):
            down = f"{s}.downsample"
            bld.layernorm(f"{down}.norm", x_qp, f"{down}.qp_norm")
            bld.linear(f"{down}.reduction", f"{down}.qp_norm", f"{down}.qp_out")
            x_qp = f"{down}.qp_out"
        blocks = []
        for j, blk in enumerate(stage.blocks):
            b = f"{s}.blocks.{j}"
            heads = int(blk.attn.num_heads)
            entry = {"name": b, "heads": heads, "window": [int(v) for v in blk.window_size],
                     "shift": [int(v) for v in blk.shift_size]}
            x_qp = bld.block(b, x_qp, heads, blk.attn_bias().detach().numpy())  # [nW|1, h, N, N]
            bld.compact_window_bias(blk, entry)
            blocks.append(entry)
        stages.append({"name": s, "downsample": down, "dim": int(stage.blocks[0].dim),
                       "resolution": [int(v) for v in stage.output_resolution], "blocks": blocks})
    bld.layernorm("norm", x_qp, "qp_norm")
    bld.mean("pool", "qp_norm", "qp_pool")
    bld.linear("head.fc", "qp_pool", "qp_head")
    return {"kind": "swin", "patch": list(pe.patch_size), "grid": list(pe.grid_size),
            "embed_dim": int(model.embed_dim), "head": "head.fc", "stages": stages}


def input_table(mean, std, scale, zp, channels) -> np.ndarray:
    """int8 [C, 256]: the quantized normalised value of each raw pixel value, per channel."""
    from sw.data import normalize
    pixels = np.tile(np.arange(256, dtype=np.uint8), (1, channels, 1, 1))
    return quantize_const(normalize(pixels, mean, std).numpy(), scale, zp)[0, :, 0, :]


def pack_model(model: nn.Module, arch: str, mean, std, golden_images=None, extra_config=None,
               multiplier_bits: int = MULTIPLIER_BITS) -> tvt.Model:
    """A prepared, calibrated torch model -> sw.tvt.Model (goldens computed by sw.ref).

    golden_images: uint8 [N, C, H, W] to embed with the reference's logits, or None.
    multiplier_bits: significant bits of each linear channel's requantization multiplier m0
    (docs/numerics.md; 31 is LiteRT's QuantizeMultiplier exactly).
    """
    from sw.ref import graph
    model = model.eval()
    kind = type(model).__name__
    bld = _Builder(model, multiplier_bits)
    with torch.no_grad():
        if kind == "VisionTransformer":
            g = _vit_graph(bld, model)
        elif kind == "SwinTransformer":
            g = _swin_graph(bld, model)
        else:
            raise PackError(f"cannot pack a {kind} (VisionTransformer or SwinTransformer)")
    C = int(model.patch_embed.proj.in_channels)
    H, W = (int(v) for v in model.patch_embed.img_size)
    s_in, zp_in = bld.r.qp("qp_input")
    bld.tensors["input_table"] = input_table(mean, std, s_in, zp_in, C)
    # the linear layers in execution order = the order the graph calls them
    config = {
        "format": FORMAT_NAME, "arch": arch, "timm_class": kind,
        "timm_kwargs": getattr(model, "timm_kwargs", None) or {},
        "num_classes": int(model.num_classes),
        "input": {"C": C, "H": H, "W": W, "mean": [float(v) for v in np.broadcast_to(mean, C)],
                  "std": [float(v) for v in np.broadcast_to(std, C)], "scale": s_in, "zero_point": zp_in},
        "linear_layers": bld.layers, "graph": g, "ops": bld.ops, "op_scalars": bld.scalars,
        "quant_points": bld.r.qp_log,
        "packer": {"tool": "sw.pack", "format_version": "2.0", "multiplier_bits": multiplier_bits,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    config.update(extra_config or {})
    packed = tvt.Model(config, bld.tensors)
    if golden_images is not None and len(golden_images):
        gi = np.ascontiguousarray(golden_images, dtype=np.uint8)
        packed.tensors["golden/inputs"] = gi
        packed.tensors["golden/outputs"] = graph.run(packed, gi)
        packed = tvt.Model(config, packed.tensors)
    return packed


# ------------------------------------------------------------------------------------------
# Calibration and model sources
# ------------------------------------------------------------------------------------------
@torch.no_grad()
def calibrate(model: nn.Module, images_uint8: np.ndarray, mean, std, batch: int = 64) -> nn.Module:
    """Set every activation quantizer's range from float activations over `images_uint8`
    (running mean of the per-batch min/max), then freeze: the model is ready to pack."""
    from sw.data import normalize
    from sw.quant import ActQuantizer, act_quantizers, set_observers
    observers = [q for _, q in act_quantizers(model) if isinstance(q, ActQuantizer)]
    if not observers:
        raise PackError("the model has no activation quantizers: run sw.quant.prepare first")
    set_observers(model, observe=True, enabled=False)
    model.train()
    for i, s in enumerate(range(0, len(images_uint8), batch)):
        for q in observers:
            q.momentum = 1.0 / (i + 1)
        model(normalize(images_uint8[s:s + batch], mean, std))
    set_observers(model, observe=False, enabled=True)
    return model.eval()


def synthetic_images(n, C, H, W, seed=0) -> np.ndarray:
    """Smooth random uint8 images (low-frequency noise), a stand-in for data in size accounting."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (n, C, max(H // 8, 1), max(W // 8, 1))).astype(np.uint8)
    img = low.repeat(8, axis=2).repeat(8, axis=3)[:, :, :H, :W]
    pad_h, pad_w = H - img.shape[2], W - img.shape[3]
    return np.pad(img, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")


def random_model(arch: str, calib_images: int = 2, seed: int = 0):
    """(prepared ternary model, ModelConfig) of a registered arch with random init, calibrated
    on synthetic images (for size accounting)."""
    from sw.models import create_model, model_config
    from sw.quant import prepare
    torch.manual_seed(seed)
    cfg = model_config(arch)
    model = prepare(create_model(arch), weights="ternary")
    calibrate(model, synthetic_images(calib_images, *cfg.input_size, seed=seed), cfg.mean, cfg.std,
              batch=calib_images)
    return model, cfg


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser(prog="python -m sw.pack", description=(
        "Pack a trained ternary ViT/Swin checkpoint into an integer-only .tvt file "
        "(docs/tvt-format.md), or a randomly initialised one for size accounting."))
    p.add_argument("checkpoint", nargs="?", help="checkpoint written by sw.train")
    p.add_argument("-o", "--output", required=True, help="the .tvt file to write")
    p.add_argument("--arch", help="registered model name (with --init random; see sw.models.list_models)")
    p.add_argument("--init", choices=["random"], help="pack a randomly initialised --arch")
    p.add_argument("--golden", type=int, default=4, help="golden images to embed (default 4; 0: none)")
    p.add_argument("--calib-images", type=int, default=2,
                   help="synthetic calibration images for --init random (default 2)")
    p.add_argument("--multiplier-bits", type=int, default=MULTIPLIER_BITS, metavar="N",
                   help=f"significant bits of each channel's requantization multiplier m0, "
                        f"{MIN_MULTIPLIER_BITS}..31 (default {MULTIPLIER_BITS}: 2 bytes a channel "
                        "in the file; 31: LiteRT's own rounding, so sw.export reproduces every "
                        "FULLY_CONNECTED exactly)")
    p.add_argument("--no-compress", action="store_true",
                   help="store every section raw (default: deflated where that is smaller)")
    p.add_argument("--json", help="write a flat JSON report here")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not MIN_MULTIPLIER_BITS <= args.multiplier_bits <= 31:
            raise PackError(f"--multiplier-bits must be {MIN_MULTIPLIER_BITS}..31, "
                            f"got {args.multiplier_bits}")
        if args.init == "random":
            if not args.arch or args.checkpoint:
                raise PackError("--init random needs --arch NAME and no CHECKPOINT")
            model, cfg = random_model(args.arch, args.calib_images)
            arch, mean, std = cfg.name, cfg.mean, cfg.std
            golden = synthetic_images(args.golden, *cfg.input_size, seed=1)
            source = {"init": "random", "calib_images": args.calib_images}
        else:
            if not args.checkpoint:
                raise PackError("give a CHECKPOINT, or --arch NAME --init random")
            model, arch, mean, std, source = load_trained(args.checkpoint, args.arch)
            C, H, W = model.patch_embed.proj.in_channels, *model.patch_embed.img_size
            golden = _golden_images(arch, args.golden, C, H, W)
        t0 = time.perf_counter()
        packed = pack_model(model, arch, mean, std, golden, {"source": source},
                            args.multiplier_bits)
        size = tvt.save(packed, args.output, compress=not args.no_compress)
    except FileNotFoundError as e:
        print(f"sw.pack: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as e:  # PackError, UnknownModelError, bad checkpoint
        print(f"sw.pack: error: {e}", file=sys.stderr)
        return 2
    report = {"output": str(args.output), "arch": arch, "bytes": size,
              "linear_layers": len(packed.linear_layers()),
              "weights": int(sum(l.K * l.O for l in packed.linear_layers())),
              "golden": 0 if packed.golden is None else len(packed.golden[0]),
              "seconds": round(time.perf_counter() - t0, 2)}
    print(f"sw.pack: wrote {args.output}: {arch}, {report['linear_layers']} ternary layers, "
          f"{report['weights']:,} weights, {size / 1e6:.3f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def _golden_images(arch, n, C, H, W):
    if n <= 0:
        return None
    if (C, H, W) == (1, 28, 28):
        try:
            from sw.data import load_dataset
            return load_dataset("fashion-mnist", "test")[0][:n]
        except (ValueError, OSError):
            pass
    return synthetic_images(n, C, H, W, seed=1)


def load_trained(path, arch=None):
    """(prepared model, arch name, mean, std, info) from a sw.train checkpoint."""
    from sw.train import load_checkpoint
    model, info = load_checkpoint(path)
    q = info.get("quant", {})
    if q.get("weights") != "ternary" or not q.get("acts"):
        raise PackError(f"{path}: a {info.get('stage')} checkpoint (weights {q.get('weights')}, acts "
                        f"{q.get('acts')}); pack needs a ternary stage with activation quantizers")
    if arch and arch != info["arch"]:
        raise PackError(f"{path}: a checkpoint of {info['arch']}, not {arch}")
    if q.get("scope", "all") != "all":
        print(f"sw.pack: warning: {path} kept patch_embed/head in float (scope {q['scope']}); "
              "they are ternarized here, so the integer model differs from the trained one",
              file=sys.stderr)
    source = {k: info[k] for k in ("stage", "dataset", "epoch", "test_acc") if k in info}
    return model, info["arch"], tuple(info["mean"]), tuple(info["std"]), source


if __name__ == "__main__":
    sys.exit(main())
