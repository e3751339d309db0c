"""A .tvt (ViT/DeiT or Swin) -> int8 .tflite graph (batch 1), built with sw.export.tflite_builder.

Every op that LiteRT has as an int8 builtin is emitted with the scales the packer used, so
LiteRT recomputes the very multipliers stored in the .tvt (FULLY_CONNECTED per channel,
ADD, BATCH_MATMUL, SOFTMAX, GELU: bit-exact op by op). LayerNorm has no int8 builtin: it
is emitted as DEQUANTIZE -> float LayerNorm -> QUANTIZE with gamma/beta/eps recovered from
the integer parameters, which agrees with sw.ref's integer LayerNorm within 1 LSB
(docs/numerics.md), so the whole graph is close to, not bit-exact with, sw.ref.
"""
from __future__ import annotations

import math

import numpy as np

from sw.ref import graph as ref_graph
from sw.ref import ops

from .tflite_builder import TFLiteBuilder


class ExportError(ValueError):
    """The model cannot be exported (unsupported architecture, missing scales)."""


def nearest_alpha(m0: int, shift: int, s_x: float, s_y: float) -> np.float32:
    """The float32 nearest to the alpha with s_x alpha / s_y = m0 2^(shift - 31)."""
    return np.float32(int(m0) * 2.0 ** (int(shift) - 31) * float(np.float32(s_y)) / float(np.float32(s_x)))


def recover_alpha(m0: int, shift: int, s_x: float, s_y: float, search: int = 64) -> np.float32:
    """A float32 alpha with quantize_multiplier(double(s_x) alpha / double(s_y)) == (m0, shift):
    the packer's own float32 alpha, found among the 2 * search + 1 float32 values nearest the
    estimate (nearest first). ExportError if none: a multiplier packed with fewer than 31
    significant bits is rarely reachable from a float32 scale."""
    s_x, s_y = float(np.float32(s_x)), float(np.float32(s_y))
    want = (int(m0), int(shift))
    estimate = nearest_alpha(m0, shift, s_x, s_y)
    steps = np.arange(-search, search + 1)
    steps = steps[np.argsort(np.abs(steps), kind="stable")]
    cands = (estimate.view(np.int32) + steps.astype(np.int32)).view(np.float32)
    cands = cands[np.isfinite(cands) & (cands >= 0)]
    m0s, shifts = ops.quantize_multipliers(s_x * cands.astype(np.float64) / s_y)
    hits = cands[(m0s == want[0]) & (shifts == want[1])]
    if len(hits):
        return hits[0]
    raise ExportError(f"no float32 alpha reproduces multiplier {want}")


class _Exporter:
    def __init__(self, model):
        self.m = model
        self.cfg = model.config
        self.qps = self.cfg.get("quant_points")
        if not self.qps:
            raise ExportError("the model has no quant_points (scales) in its config")
        self.b = TFLiteBuilder(description=f"tervit {self.cfg.get('arch', '')}")
        self.record: list[tuple[str, str, list[int], int]] = []  # (kind, op, inputs, output)

    # -- helpers ------------------------------------------------------------------------
    def qp(self, name):
        if name not in self.qps:
            raise ExportError(f"quant point {name!r} missing from the model config")
        s, zp = self.qps[name]
        return float(np.float32(s)), int(zp)

    def act(self, name, shape, qp):
        s, zp = qp if isinstance(qp, tuple) else self.qp(qp)
        return self.b.tensor(name, shape, "int8", scale=s, zero_point=zp)

    def i32(self, name, values):
        v = np.asarray(values, dtype=np.int32)
        return self.b.tensor(name, v.shape, "int32", data=v)

    def f32(self, name, values, shape=None):
        v = np.asarray(values, dtype=np.float32)
        return self.b.tensor(name, v.shape if shape is None else shape, "float32", data=v)

    def reshape(self, x, shape, qp, name):
        y = self.act(name, shape, qp)
        self.b.op("RESHAPE", [x, self.i32(name + "/shape", shape)], [y])
        return y

    def transpose(self, x, perm, shape, qp, name):
        y = self.act(name, shape, qp)
        self.b.op("TRANSPOSE", [x, self.i32(name + "/perm", perm)], [y])
        return y

    def linear(self, name, x, in_qp, out_qp, lead):
        layer = self.m.linear(name)
        s_x, zp_x = self.qp(in_qp)
        s_y, zp_y = self.qp(out_qp)
        alpha, inexact = self.alphas(layer, s_x, s_y)
        bias_q = layer.bias.astype(np.int64) + zp_x * layer.trits.astype(np.int64).sum(1)
        w = self.b.tensor(name + "/weights", (layer.O, layer.K), "int8", scale=alpha,
                          zero_point=0, data=layer.trits)
        bias = self.b.tensor(name + "/bias", (layer.O,), "int32",
                             scale=np.float32(s_x) * alpha, zero_point=0, data=bias_q)
        y = self.act(name, tuple(lead) + (layer.O,), (s_y, zp_y))
        self.b.op("FULLY_CONNECTED", [x, w, bias], [y], KeepNumDims=True)
        self.record.append(("linear_approx" if inexact else "linear", name, [x], y))
        return y

    def alphas(self, layer, s_x, s_y):
        """float32 per-channel scales for LiteRT, and how many channels' multipliers they
        cannot reproduce (the nearest float32 is taken there: within 1 LSB of the .tvt)."""
        alpha, inexact = np.empty(layer.O, np.float32), 0
        for o, (m, s) in enumerate(zip(layer.m0, layer.shift)):
            try:
                alpha[o] = recover_alpha(m, s, s_x, s_y)
            except ExportError:
                alpha[o] = nearest_alpha(m, s, s_x, s_y)
                inexact += 1
        return alpha, inexact

    def layernorm(self, name, x, in_qp, out_qp, shape):
        """DEQUANTIZE -> (x - mean) * rsqrt(var + eps) * gamma + beta -> QUANTIZE."""
        p = ops.LayerNormParams.from_arrays(self.m.op_arrays(name))
        c = shape[-1]
        s_in, _ = self.qp(in_qp)
        s_out, zp_out = self.qp(out_qp)
        gain = p.m0.astype(np.float64) * 2.0 ** (p.shift.astype(np.float64) - 31)
        gamma = p.sign * gain * s_out * 2.0**ops.LN_FRAC_BITS / math.sqrt(c)
        beta = p.offset * gain * s_out
        eps = p.eps_q * s_in**2 / c**3
        fshape = tuple(shape)
        red = fshape[:-1] + (1,)

        def t(suffix, shp=fshape):
            return self.b.tensor(f"{name}/{suffix}", shp, "float32")

        xf, mu, sq, var, ve, inv, xc, xn, xg, yb = (
            t("x"), t("mean", red), t("sqdiff"), t("var", red), t("var_eps", red),
            t("rsqrt", red), t("centered"), t("normed"), t("scaled"), t("shifted"))
        axis = self.i32(f"{name}/axis", [len(shape) - 1])
        self.b.op("DEQUANTIZE", [x], [xf])
        self.b.op("MEAN", [xf, axis], [mu], KeepDims=True)
        self.b.op("SQUARED_DIFFERENCE", [xf, mu], [sq])
        self.b.op("MEAN", [sq, axis], [var], KeepDims=True)
        self.b.op("ADD", [var, self.f32(f"{name}/eps", [eps])], [ve])
        self.b.op("RSQRT", [ve], [inv])
        self.b.op("SUB", [xf, mu], [xc])
        self.b.op("MUL", [xc, inv], [xn])
        self.b.op("MUL", [xn, self.f32(f"{name}/gamma", gamma)], [xg])
        self.b.op("ADD", [xg, self.f32(f"{name}/beta", beta)], [yb])
        y = self.act(name, fshape, (s_out, zp_out))
        self.b.op("QUANTIZE", [yb], [y])
        self.record.append(("layernorm", name, [x], y))
        return y

    def add(self, name, a, b, qo, shape):
        y = self.act(name, shape, qo)
        self.b.op("ADD", [a, b], [y])
        self.record.append(("add", name, [a, b], y))
        return y

    def image_patches(self):
        """uint8 image -> int8 (input table) -> patches [1, P, C*ph*pw]; returns (image, x)."""
        g = self.cfg["graph"]
        inp = self.cfg["input"]
        C, H, W = int(inp["C"]), int(inp["H"]), int(inp["W"])
        ph, pw = g["patch"]
        gh, gw = H // ph, W // pw
        b = self.b
        # uint8 image -> int8 through the per-channel input table: GATHER on c * 256 + v
        img = b.tensor("image", (1, C, H, W), "uint8")
        idx = b.tensor("image/int32", (1, C, H, W), "int32")
        idx2 = b.tensor("image/index", (1, C, H, W), "int32")
        b.op("CAST", [img], [idx])
        offs = self.i32("image/channel_offset", (np.arange(C) * 256).reshape(1, C, 1, 1))
        b.op("ADD", [idx, offs], [idx2])
        table = b.tensor("input_table", (C * 256,), "int8", *self.qp("qp_input"),
                         data=np.asarray(self.m.input_table).reshape(-1))
        xq = self.act("image/int8", (1, C, H, W), "qp_input")
        b.op("GATHER", [table, idx2], [xq], Axis=0)
        x = self.reshape(xq, (1, C, gh, ph, gw, pw), "qp_input", "patches/split")
        x = self.transpose(x, (0, 2, 4, 1, 3, 5), (1, gh, gw, C, ph, pw), "qp_input", "patches/t")
        return img, self.reshape(x, (1, gh * gw, C * ph * pw), "qp_input", "patches")

    def gather(self, x, index, axis, shape, qp, name):
        y = self.act(name, shape, qp)
        self.b.op("GATHER", [x, self.i32(name + "/index", index)], [y], Axis=axis)
        return y

    def mlp(self, name, h, in_qp, T):
        """fc1 -> GELU -> fc2 on [1, T, D]."""
        f1 = self.linear(f"{name}.mlp.fc1", h, in_qp, f"{name}.mlp.qp_fc1", (1, T))
        hidden = self.m.linear(f"{name}.mlp.fc1").O
        act = self.act(f"{name}.mlp.act", (1, T, hidden), f"{name}.mlp.qp_act")
        self.b.op("GELU", [f1], [act], Approximate=False)
        self.record.append(("gelu", f"{name}.mlp.act", [f1], act))
        return self.linear(f"{name}.mlp.fc2", act, f"{name}.mlp.qp_act", f"{name}.mlp.qp_fc2", (1, T))

    def attention(self, a, x, in_qp, B, T, D, heads, bias=None):
        """Multi-head attention of module `a` on x [B, T, D]; bias: int8 const [nW|1, h, T, T]."""
        d = D // heads
        qkv = self.linear(f"{a}.qkv", x, in_qp, f"{a}.qp_qkv", (B, T))
        qkv = self.reshape(qkv, (B, T, 3, heads, d), f"{a}.qp_qkv", f"{a}.qkv/split")
        qkv = self.transpose(qkv, (2, 0, 3, 1, 4), (3, B, heads, T, d), f"{a}.qp_qkv", f"{a}.qkv/t")
        q, k, v = (self.act(f"{a}.{n}", (B, heads, T, d), f"{a}.qp_qkv") for n in "qkv")
        self.b.op("UNPACK", [qkv], [q, k, v], Num=3, Axis=0)
        # fold 1/sqrt(d) into q's scale exactly as the packer did (MatmulParams.from_scales)
        s_qkv, zp_qkv = self.qp(f"{a}.qp_qkv")
        scale = self._attn_scale(f"{a}.scores", s_qkv, zp_qkv, f"{a}.qp_scores", d)
        qs = self.reshape(q, (B, heads, T, d), (float(np.float32(s_qkv * scale)), zp_qkv),
                          f"{a}.q_scaled")
        s = self.act(f"{a}.scores", (B, heads, T, T), f"{a}.qp_scores")
        self.b.op("BATCH_MATMUL", [qs, k], [s], AdjY=True)
        self.record.append(("matmul_adj_y", f"{a}.scores", [qs, k], s))
        if bias is not None:
            const = self.b.tensor(f"{a}.bias", bias.shape, "int8", *self.qp(f"{a}.qp_bias"),
                                  data=bias)
            s = self.add(f"{a}.bias_add", s, const, f"{a}.qp_biased", (B, heads, T, T))
        p = self.act(f"{a}.softmax", (B, heads, T, T), f"{a}.qp_softmax")
        self.b.op("SOFTMAX", [s], [p], Beta=1.0)
        self.record.append(("softmax", f"{a}.softmax", [s], p))
        c = self.act(f"{a}.ctx", (B, heads, T, d), f"{a}.qp_ctx")
        self.b.op("BATCH_MATMUL", [p, v], [c])
        self.record.append(("matmul", f"{a}.ctx", [p, v], c))
        c = self.transpose(c, (0, 2, 1, 3), (B, T, heads, d), f"{a}.qp_ctx", f"{a}.ctx/t")
        c = self.reshape(c, (B, T, D), f"{a}.qp_ctx", f"{a}.ctx/merge")
        return self.linear(f"{a}.proj", c, f"{a}.qp_ctx", f"{a}.qp_proj", (B, T))

    def _attn_scale(self, op_name, s_qkv, zp_qkv, out_qp, d):
        """The attention scale the packer folded in: 1/sqrt(d) unless the stored multiplier
        says otherwise (checked, so a model with another scale fails loudly)."""
        p = ops.MatmulParams.from_arrays(self.m.op_arrays(op_name))
        scale = d ** -0.5
        want = ops.MatmulParams.from_scales(s_qkv * scale, zp_qkv, s_qkv, zp_qkv, *self.qp(out_qp))
        if want != p:
            raise ExportError(f"{op_name}: stored multiplier is not the 1/sqrt({d}) attention scale")
        return scale


class _VitExporter(_Exporter):
    def build(self) -> bytes:
        g = self.cfg["graph"]
        img, x = self.image_patches()
        P, D = self.b.shape(x)[1], int(g["embed_dim"])
        T = P + 1
        b = self.b
        tok = self.linear("patch_embed.proj", x, "qp_input", "qp_tokens", (1, P))
        cls = b.tensor("cls_token", (1, 1, D), "int8", *self.qp("qp_tokens"),
                       data=self.m.const("cls_token").reshape(1, 1, D))
        x = self.act("tokens", (1, T, D), "qp_tokens")
        b.op("CONCATENATION", [cls, tok], [x], Axis=1)
        pos = b.tensor("pos_embed", (1, T, D), "int8", *self.qp("qp_pos"),
                       data=self.m.const("pos_embed").reshape(1, T, D))
        x = self.add("pos_add", x, pos, "qp_embed", (1, T, D))
        x_qp = "qp_embed"
        for blk in g["blocks"]:
            name, heads = blk["name"], int(blk["heads"])
            h = self.layernorm(f"{name}.norm1", x, x_qp, f"{name}.qp_norm1", (1, T, D))
            o = self.attention(f"{name}.attn", h, f"{name}.qp_norm1", 1, T, D, heads)
            x = self.add(f"{name}.add1", x, o, f"{name}.qp_res1", (1, T, D))
            h = self.layernorm(f"{name}.norm2", x, f"{name}.qp_res1", f"{name}.qp_norm2", (1, T, D))
            f2 = self.mlp(name, h, f"{name}.qp_norm2", T)
            x = self.add(f"{name}.add2", x, f2, f"{name}.qp_res2", (1, T, D))
            x_qp = f"{name}.qp_res2"
        y = self.layernorm("norm", x, x_qp, "qp_norm", (1, T, D))
        y = self.gather(y, [0], 1, (1, 1, D), "qp_norm", "norm/cls")
        y = self.reshape(y, (1, D), "qp_norm", "norm/cls2d")
        logits = self.linear(g["head"], y, "qp_norm", "qp_head", (1,))
        return b.finish(inputs=[img], outputs=[logits])


class _SwinExporter(_Exporter):
    def build(self) -> bytes:
        g = self.cfg["graph"]
        img, x = self.image_patches()
        gh, gw = g["grid"]
        L = gh * gw
        x = self.linear("patch_embed.proj", x, "qp_input", "patch_embed.qp_out", (1, L))
        C = self.m.linear("patch_embed.proj").O
        x = self.layernorm("patch_embed.norm", x, "patch_embed.qp_out", "patch_embed.qp_norm",
                           (1, L, C))
        x_qp, (H, W) = "patch_embed.qp_norm", (gh, gw)
        for stage in g["stages"]:
            if stage.get("downsample"):
                d = stage["downsample"]
                x = self.reshape(x, (1, H // 2, 2, W // 2, 2, C), x_qp, f"{d}/split")
                x = self.transpose(x, (0, 1, 3, 4, 2, 5), (1, H // 2, W // 2, 2, 2, C), x_qp, f"{d}/t")
                H, W, C = H // 2, W // 2, 4 * C
                L = H * W
                x = self.reshape(x, (1, L, C), x_qp, f"{d}/merge")
                x = self.layernorm(f"{d}.norm", x, x_qp, f"{d}.qp_norm", (1, L, C))
                x = self.linear(f"{d}.reduction", x, f"{d}.qp_norm", f"{d}.qp_out", (1, L))
                C = self.m.linear(f"{d}.reduction").O
                x_qp = f"{d}.qp_out"
            for blk in stage["blocks"]:
                x, x_qp = self.swin_block(blk, x, x_qp, H, W, C)
        y = self.layernorm("norm", x, x_qp, "qp_norm", (1, L, C))
        pooled = self.act("pool", (1, C), "qp_pool")
        self.b.op("MEAN", [y, self.i32("pool/axis", [1])], [pooled], KeepDims=False)
        self.record.append(("mean", "pool", [y], pooled))
        logits = self.linear(g["head"], pooled, "qp_pool", "qp_head", (1,))
        return self.b.finish(inputs=[img], outputs=[logits])

    def swin_block(self, blk, x, x_qp, H, W, C):
        """Roll + window partition and their inverse are one GATHER each (index permutations)."""
        name, heads = blk["name"], int(blk["heads"])
        wh, ww = blk["window"]
        sh, sw = blk["shift"]
        L, N = H * W, wh * ww
        nw = L // N
        pos = np.arange(L).reshape(1, H, W, 1)
        perm = ref_graph.window_partition(np.roll(pos, (-sh, -sw), axis=(1, 2)), wh, ww).reshape(-1)
        h = self.layernorm(f"{name}.norm1", x, x_qp, f"{name}.qp_norm1", (1, L, C))
        win = self.gather(h, perm, 1, (1, L, C), f"{name}.qp_norm1", f"{name}/windows")
        win = self.reshape(win, (nw, N, C), f"{name}.qp_norm1", f"{name}/windows3d")
        bias = ref_graph.window_bias(self.m, blk, (H, W))
        a = self.attention(f"{name}.attn", win, f"{name}.qp_norm1", nw, N, C, heads, bias)
        a = self.reshape(a, (1, L, C), f"{name}.attn.qp_proj", f"{name}/tokens")
        a = self.gather(a, np.argsort(perm), 1, (1, L, C), f"{name}.attn.qp_proj", f"{name}/unwindow")
        x = self.add(f"{name}.add1", x, a, f"{name}.qp_res1", (1, L, C))
        h = self.layernorm(f"{name}.norm2", x, f"{name}.qp_res1", f"{name}.qp_norm2", (1, L, C))
        f2 = self.mlp(name, h, f"{name}.qp_norm2", L)
        x = self.add(f"{name}.add2", x, f2, f"{name}.qp_res2", (1, L, C))
        return x, f"{name}.qp_res2"


_EXPORTERS = {"vit": _VitExporter, "swin": _SwinExporter}


def export_tflite(model, with_record: bool = False):
    """The .tflite bytes of a sw.tvt.Model (ViT/DeiT or Swin; batch 1, uint8 image
    [1, C, H, W] in, int8 logits [1, classes] out). with_record: also return
    [(kind, op name, input tensor indices, output tensor index)] of the int8 ops, for
    checking them in place (sw.export.check)."""
    kind = model.config.get("graph", {}).get("kind")
    if kind not in _EXPORTERS:
        raise ExportError(f"cannot export graph kind {kind!r} (one of {', '.join(_EXPORTERS)})")
    ex = _EXPORTERS[kind](model)
    data = ex.build()
    return (data, ex.record) if with_record else data
