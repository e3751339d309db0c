"""The integer graph runner: ViT/DeiT and Swin from a .tvt file alone (docs/numerics.md).

`run(model, images_uint8) -> int8 logits`. Integer NumPy only on the data path, vectorised
over the batch. Every ternary linear layer goes through the `linear` hook
(`linear(layer, x_int8[..., K]) -> int8[..., O]`); the default is `ops.ternary_linear`, the
host runtime passes one that runs the layer on the FPGA.

Op parameters are looked up by name in the model (`op/<name>/...`, `const/<name>`); the
names follow the torch modules: `blocks.3.norm1`, `blocks.3.attn.scores`, `layers.1.blocks.0.attn.bias_add`, ...
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import ops

LinearFn = Callable[[object, np.ndarray], np.ndarray]


def default_linear(layer, x: np.ndarray) -> np.ndarray:
    """The reference ternary linear layer (what the hardware must reproduce)."""
    return ops.ternary_linear(x, layer.trits, layer.bias, layer.m0, layer.shift, layer.out_zp)


class _Graph:
    """The parameters of one model, decoded once, and the op helpers of the graph."""

    def __init__(self, model, linear: LinearFn | None, trace: dict | None = None):
        self.model = model
        self.trace = trace
        self.linear_fn = linear or default_linear
        self.layers = {layer.name: layer for layer in model.linear_layers()}
        self._params = {}

    def param(self, name, cls):
        key = (name, cls)
        if key not in self._params:
            arrays = self.model.op_arrays(name)
            if cls is ops.SoftmaxParams and "exp_table" not in arrays:
                self._params[key] = ops.SoftmaxParams.from_multiplier(
                    int(arrays["input_multiplier"]), int(arrays["input_left_shift"]), int(arrays["diff_min"]))
            else:
                self._params[key] = cls.from_arrays(arrays)
        return self._params[key]

    def window_bias(self, blk, resolution):
        key = ("window_bias", blk["name"])
        if key not in self._params:
            self._params[key] = window_bias(self.model, blk, resolution)
        return self._params[key]

    def linear(self, name: str, x: np.ndarray) -> np.ndarray:
        layer = self.layers[name]
        lead = x.shape[:-1]
        y = self.linear_fn(layer, np.ascontiguousarray(x.reshape(-1, x.shape[-1])))
        y = np.asarray(y)
        if y.dtype != np.int8 or y.shape != (int(np.prod(lead, dtype=np.int64)), layer.O):
            raise ValueError(f"linear hook returned {y.dtype} {y.shape} for layer {name!r}")
        return self._rec(name, y.reshape(*lead, layer.O))

    def _rec(self, name, y):
        if self.trace is not None:
            self.trace.setdefault(name, []).append(y)
        return y

    def layernorm(self, name, x):
        return self._rec(name, ops.layernorm(x, self.param(name, ops.LayerNormParams)))

    def add(self, name, a, b):
        return self._rec(name, ops.add(a, b, self.param(name, ops.AddParams)))

    def matmul(self, name, a, b):
        return self._rec(name, ops.matmul_p(a, b, self.param(name, ops.MatmulParams)))

    def softmax(self, name, x):
        return self._rec(name, ops.softmax(x, self.param(name, ops.SoftmaxParams)))

    def gelu(self, name, x):
        if ("table", name) not in self._params:
            self._params[("table", name)] = self.model.op_arrays(name)["table"]
        return self._rec(name, ops.gelu(x, self._params[("table", name)]))

    def mean(self, name, x, axis):
        return self._rec(name, ops.mean(x, axis, self.param(name, ops.MeanParams)))

    def attention(self, prefix, x, heads, bias=None):
        """Multi-head self-attention on int8 tokens x [B, T, D] (B = images or windows).

        bias: None, or (const int8 [nW, heads, T, T], nW) added to the scores per window."""
        B, T, _ = x.shape
        qkv = self.linear(f"{prefix}.qkv", x)
        d = qkv.shape[-1] // (3 * heads)
        q, k, v = qkv.reshape(B, T, 3, heads, d).transpose(2, 0, 3, 1, 4)  # each [B, h, T, d]
        s = self.matmul(f"{prefix}.scores", q, k.transpose(0, 1, 3, 2))
        if bias is not None:
            const, nw = bias
            s = self.add(f"{prefix}.bias_add", s.reshape(B // nw, nw, heads, T, T), const[None])
            s = s.reshape(B, heads, T, T)
        p = self.softmax(f"{prefix}.softmax", s)
        c = self.matmul(f"{prefix}.ctx", p, v)  # [B, h, T, d]
        c = c.transpose(0, 2, 1, 3).reshape(B, T, heads * d)
        return self.linear(f"{prefix}.proj", c)

    def mlp(self, prefix, x):
        f = self.gelu(f"{prefix}.act", self.linear(f"{prefix}.fc1", x))
        return self.linear(f"{prefix}.fc2", f)


def quantize_images(model, images: np.ndarray) -> np.ndarray:
    """uint8 images [N, C, H, W] -> int8 through the model's per-channel input table."""
    table = model.input_table
    return table[np.arange(table.shape[0])[None, :, None, None], images]


def patchify(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """[N, C, H, W] -> [N, H/ph, W/pw, C*ph*pw] in the conv weight's (C, kh, kw) flatten order."""
    N, C, H, W = x.shape
    x = x.reshape(N, C, H // ph, ph, W // pw, pw).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(N, H // ph, W // pw, C * ph * pw)


def _vit(g: _Graph, x: np.ndarray) -> np.ndarray:
    cfg = g.model.config["graph"]
    ph, pw = cfg["patch"]
    N = x.shape[0]
    t = g.linear("patch_embed.proj", patchify(x, ph, pw)).reshape(N, -1, cfg["embed_dim"])
    if cfg.get("class_token", True):
        cls = np.broadcast_to(g.model.const("cls_token"), (N, 1, t.shape[-1]))
        t = np.concatenate([cls, t], axis=1)
    x = g.add("pos_add", t, g.model.const("pos_embed")[None])
    for blk in cfg["blocks"]:
        b = blk["name"]
        x = g.add(f"{b}.add1", x, g.attention(f"{b}.attn", g.layernorm(f"{b}.norm1", x), blk["heads"]))
        x = g.add(f"{b}.add2", x, g.mlp(f"{b}.mlp", g.layernorm(f"{b}.norm2", x)))
    y = g.layernorm("norm", x)
    return g.linear(cfg["head"], y[:, 0])


def window_partition(x: np.ndarray, wh: int, ww: int) -> np.ndarray:
    """[N, H, W, C] -> [N * nW, wh * ww, C], windows in row-major order (timm)."""
    N, H, W, C = x.shape
    x = x.reshape(N, H // wh, wh, W // ww, ww, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def window_reverse(w: np.ndarray, wh: int, ww: int, H: int, W: int) -> np.ndarray:
    """Inverse of window_partition."""
    C = w.shape[-1]
    x = w.reshape(-1, H // wh, W // ww, wh, ww, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def relative_position_index(wh: int, ww: int) -> np.ndarray:
    """[N, N] row of the (2wh-1)(2ww-1)-row relative position bias table for each query/key pair."""
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


def shift_regions(H: int, W: int, wh: int, ww: int, sh: int, sw: int) -> np.ndarray:
    """[nW, N] region id of each token of each shifted window (timm's 3x3 regions)."""
    img = np.zeros((1, H, W, 1), dtype=np.int64)
    region = 0
    for hs in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
        for ws in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
            img[:, hs, ws, :] = region
            region += 1
    return window_partition(img, wh, ww)[..., 0]


def window_bias(model, blk: dict, resolution) -> np.ndarray:
    """int8 [nW | 1, heads, N, N]: the constant added to a Swin block's scores.

    Either stored whole (`const/<block>.attn.bias`) or rebuilt with integer indexing from the
    quantized bias table (`...bias_table` [R, heads]) and, for a shifted block, the table
    quantized with the shift mask added (`...bias_table_masked`), which is what pack stores
    when the two agree bit for bit."""
    b = blk["name"]
    if f"const/{b}.attn.bias" in model.tensors:
        return model.const(f"{b}.attn.bias")
    wh, ww = blk["window"]
    sh, sw = blk["shift"]
    idx = relative_position_index(wh, ww)
    plain = model.const(f"{b}.attn.bias_table")[idx].transpose(2, 0, 1)[None]  # 1, h, N, N
    if not (sh or sw):
        return plain
    masked = model.const(f"{b}.attn.bias_table_masked")[idx].transpose(2, 0, 1)[None]
    regions = shift_regions(*resolution, wh, ww, sh, sw)
    cross = (regions[:, :, None] != regions[:, None, :])[:, None]  # nW, 1, N, N
    return np.where(cross, masked, plain)


def _swin_block(g: _Graph, blk: dict, x: np.ndarray) -> np.ndarray:
    b = blk["name"]
    N, H, W, C = x.shape
    wh, ww = blk["window"]
    sh, sw = blk["shift"]
    h = g.layernorm(f"{b}.norm1", x)
    if sh or sw:
        h = np.roll(h, (-sh, -sw), axis=(1, 2))
    windows = window_partition(h, wh, ww)
    const = g.window_bias(blk, (H, W))
    a = g.attention(f"{b}.attn", windows, blk["heads"], bias=(const, const.shape[0]))
    a = window_reverse(a, wh, ww, H, W)
    if sh or sw:
        a = np.roll(a, (sh, sw), axis=(1, 2))
    x = g.add(f"{b}.add1", x, a)
    return g.add(f"{b}.add2", x, g.mlp(f"{b}.mlp", g.layernorm(f"{b}.norm2", x)))


def patch_merge(x: np.ndarray) -> np.ndarray:
    """[N, H, W, C] -> [N, H/2, W/2, 4C] in timm's PatchMerging order (x00, x10, x01, x11)."""
    N, H, W, C = x.shape
    return x.reshape(N, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 4, 2, 5).reshape(N, H // 2, W // 2, 4 * C)


def _swin(g: _Graph, x: np.ndarray) -> np.ndarray:
    cfg = g.model.config["graph"]
    ph, pw = cfg["patch"]
    x = g.linear("patch_embed.proj", patchify(x, ph, pw))
    x = g.layernorm("patch_embed.norm", x)
    for stage in cfg["stages"]:
        if stage.get("downsample"):
            d = stage["downsample"]
            x = g.linear(f"{d}.reduction", g.layernorm(f"{d}.norm", patch_merge(x)))
        for blk in stage["blocks"]:
            x = _swin_block(g, blk, x)
    y = g.layernorm("norm", x)
    pooled = g.mean("pool", y.reshape(y.shape[0], -1, y.shape[-1]), 1)
    return g.linear(cfg["head"], pooled)


ARCHS = {"vit": _vit, "swin": _swin}


def check_images(model, images) -> np.ndarray:
    """Validate a uint8 image batch [N, C, H, W] (or [N, H, W] for one channel) for model."""
    images = np.asarray(images)
    inp = model.config["input"]
    want = (inp["C"], inp["H"], inp["W"])
    if images.ndim == 3 and want[0] == 1:
        images = images[:, None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
        raise ValueError(f"expected uint8 images [N, {want[0]}, {want[1]}, {want[2]}], "
                         f"got {images.dtype} {list(images.shape)}")
    return images


_GRAPH_KEYS = {"vit": ("patch", "embed_dim", "head", "blocks"),
               "swin": ("patch", "head", "stages")}


_PARAM_CLASSES = {"layernorm": ops.LayerNormParams, "add": ops.AddParams,
                  "matmul": ops.MatmulParams, "softmax": ops.SoftmaxParams, "mean": ops.MeanParams}


def check_model(model, g: "_Graph | None" = None) -> None:
    """Raise ValueError naming the problem unless every op, layer and constant that the graph
    will use is in the model and well formed (so a bad file fails before any image is run)."""
    g_ = g or _Graph(model, None)
    g = model.config.get("graph")
    kind = g.get("kind") if isinstance(g, dict) else None
    if kind not in ARCHS:
        raise ValueError(f"unknown graph kind {kind!r} (one of {', '.join(ARCHS)})")
    missing = [k for k in _GRAPH_KEYS[kind] if k not in g]
    if missing:
        raise ValueError(f"graph config lacks {', '.join(missing)}")
    ops_list = model.config.get("ops")
    if not isinstance(ops_list, list):
        raise ValueError("config lacks the op list 'ops'")
    layers = {l["name"] for l in model.config["linear_layers"]}
    for entry in ops_list:
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry)):
            raise ValueError(f"malformed op list entry {entry!r:.60}")
        kind_, name = entry
        if kind_ == "linear":
            if name not in layers:
                raise ValueError(f"op list names linear layer {name!r}, which the model lacks")
        elif kind_ == "gelu":
            table = model.op_arrays(name).get("table") if any(
                k.startswith(f"op/{name}/") for k in model.tensors) else None
            if table is None or table.shape != (256,):
                raise ValueError(f"gelu op {name!r}: no 256-entry table")
        elif kind_ in _PARAM_CLASSES:
            try:
                g_.param(name, _PARAM_CLASSES[kind_])
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"{kind_} op {name!r}: bad parameters ({e})") from None
        else:
            raise ValueError(f"unknown op kind {kind_!r} in the op list")
    try:
        blocks = g["blocks"] if kind == "vit" else [b for st in g["stages"] for b in st["blocks"]]
        for b in blocks:
            int(b["heads"]), str(b["name"])
            if kind == "swin":
                (int(v) for v in b["window"] + b["shift"])
                if not any(k.startswith(f"const/{b['name']}.attn.bias") for k in model.tensors):
                    raise ValueError(f"no attention bias constant for {b['name']!r}")
        if kind == "vit":
            model.const("pos_embed"), model.const("cls_token")
    except (KeyError, TypeError) as e:
        raise ValueError(f"graph config is malformed ({type(e).__name__}: {e})") from None


def auto_batch_size(model, budget_bytes: int = 2**28, cap: int = 256) -> int:
    """Images per batch so that the largest int64 intermediates stay within about budget_bytes."""
    g = model.config["graph"]
    if g["kind"] == "vit":
        T = int(np.prod(g["grid"])) + 1
        peak = max(b["heads"] for b in g["blocks"]) * T * T
        peak = max([peak] + [T * int(l["O"]) for l in model.config["linear_layers"]])
    else:
        tokens = {"patch_embed.": int(np.prod(g["grid"]))}
        peak = 0
        for st in g["stages"]:
            T = int(np.prod(st["resolution"]))
            tokens[st["name"] + "."] = T
            for b in st["blocks"]:
                peak = max(peak, T * int(np.prod(b["window"])) * b["heads"])
        for l in model.config["linear_layers"]:
            T = next((t for prefix, t in tokens.items() if l["name"].startswith(prefix)), 1)
            peak = max(peak, T * int(l["O"]))
    return int(max(1, min(cap, budget_bytes // (24 * peak))))


def run(model, images_uint8, linear: LinearFn | None = None, batch_size: int | None = None,
        progress: bool = False, trace: dict | None = None) -> np.ndarray:
    """Integer logits int8 [N, num_classes] of uint8 images [N, C, H, W] (model: sw.tvt.Model).

    linear: the hook that runs each ternary layer (default: the reference's). batch_size:
    images per NumPy batch (default: auto_batch_size, at most 256). trace: a dict that
    receives {op name: [int8 output per batch]} for every op, for debugging."""
    images = check_images(model, images_uint8)
    g = _Graph(model, linear, trace)
    check_model(model, g)
    arch = model.config["graph"]["kind"]
    batch_size = batch_size or auto_batch_size(model)
    out = np.empty((images.shape[0], int(model.config["num_classes"])), dtype=np.int8)
    starts = range(0, images.shape[0], batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="sw.ref", unit="batch")
    for i in starts:
        out[i:i + batch_size] = ARCHS[arch](g, quantize_images(model, images[i:i + batch_size]))
    return out
