"""sw.ref.graph: the integer graph against the fake-quantized torch model (an independent
oracle: float torch ops with int8 rounding at every QuantPoint), goldens, hooks, Swin indexing."""
import numpy as np
import pytest
import torch

from sw import tvt
from sw.quant import quantize_tensor
from sw.ref import graph, ops
from tests._packed_models import packed_fixture, packed_registry

FIXTURES = ["vit_fmnist", "swin_tiny32"]


def torch_logits_and_points(model, images, mean, std):
    """Float logits of the fake-quant model and the int8 codes at every QuantPoint."""
    from sw.data import normalize
    from sw.models.quant_point import QuantPoint
    codes, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, QuantPoint) and m.quantizer is not None:
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: codes.__setitem__(name, mod.quantizer.quantize(inp[0]).numpy())))
    with torch.no_grad():
        logits = model(normalize(images, mean, std)).numpy()
    for h in hooks:
        h.remove()
    return logits, codes


@pytest.fixture(scope="module", params=FIXTURES + ["swin-fmnist"])
def fx(request, tmp_path_factory):
    """timm fixtures (trained-like weights), and swin-fmnist (random init): 14x14 tokens in
    7x7 windows shifted by 3 (the 224 models' window geometry), patch merging to 7x7."""
    build = packed_fixture if request.param in FIXTURES else packed_registry
    model, packed, mean, std, test = build(request.param)
    path = tmp_path_factory.mktemp("ref") / f"{request.param}.tvt"
    tvt.save(packed, path)
    return request.param, model, tvt.load(path), mean, std, test


@pytest.mark.parametrize("name", FIXTURES)  # (random-init logits are near ties: not swin-fmnist)
def test_logits_agree_with_fake_quant_torch(name):
    model, packed, mean, std, test = packed_fixture(name)
    q = graph.run(packed, test)
    t, _ = torch_logits_and_points(model, test, mean, std)
    s, zp = packed.config["quant_points"]["qp_head"]
    deq = s * (q.astype(np.float64) - zp)
    agree = (deq.argmax(1) == t.argmax(1)).mean()
    assert agree >= 0.95, f"{name}: top-1 agreement {agree:.3f}"
    rel = np.abs(deq - t).mean() / np.abs(t).max()
    assert rel < 0.05, f"{name}: mean |logit difference| is {rel:.3%} of the logit range"


# which QuantPoint each integer op's output corresponds to
_QP_OF = {"norm1": "qp_norm1", "norm2": "qp_norm2", "qkv": "qp_qkv", "scores": "qp_scores",
          "bias_add": "qp_biased", "softmax": "qp_softmax", "ctx": "qp_ctx", "proj": "qp_proj",
          "add1": "qp_res1", "add2": "qp_res2", "fc1": "qp_fc1", "act": "qp_act", "fc2": "qp_fc2",
          "reduction": "qp_out"}


def quant_point_of(op_name, vit):
    special = {"norm": "qp_norm", "head": "qp_head", "head.fc": "qp_head", "pos_add": "qp_embed",
               "pool": "qp_pool", "patch_embed.norm": "patch_embed.qp_norm",
               "patch_embed.proj": "qp_tokens" if vit else "patch_embed.qp_out"}
    if op_name in special:
        return special[op_name]
    prefix, _, last = op_name.rpartition(".")
    return f"{prefix}.qp_norm" if last == "norm" else f"{prefix}.{_QP_OF[last]}"


def test_every_op_tracks_its_quant_point(fx):
    """Each intermediate int8 tensor is within 1 LSB of the torch model's code at the same
    QuantPoint for the large majority of elements (drift only from integer LayerNorm/softmax)."""
    name, model, packed, mean, std, test = fx
    trace = {}
    graph.run(packed, test[:16], trace=trace)
    _, codes = torch_logits_and_points(model, test[:16], mean, std)
    vit = packed.config["graph"]["kind"] == "vit"
    assert [n for _, n in packed.config["ops"]] == list(trace)  # the op list is the execution order
    for op_name, (ours,) in trace.items():
        theirs = codes[quant_point_of(op_name, vit)]
        if op_name == "patch_embed.proj" and vit:
            theirs = theirs[:, 1:]  # qp_tokens also holds the class token
        ours = ours.astype(int).reshape(-1)
        diff = np.abs(ours - theirs.astype(int).reshape(ours.shape))
        within, mean_diff = (diff <= 1).mean(), diff.mean()
        if op_name in ("head", "head.fc"):  # tiny random-weight logits: a fine output scale
            limit, mean_limit = 0.4, 3.0
        elif op_name.endswith(".scores"):  # q.k sums d products of +-1 LSB inputs
            limit, mean_limit = 0.7, 1.2
        else:
            limit, mean_limit = 0.9, 0.8
        assert within >= limit and mean_diff <= mean_limit, (
            f"{name} {op_name}: {within:.3f} of elements within 1 LSB, mean |diff| {mean_diff:.2f}")


def test_goldens_are_bit_exact(fx):
    _, _, packed, *_ = fx
    gi, go = packed.golden
    assert gi.shape[0] in (2, 4)
    np.testing.assert_array_equal(graph.run(packed, gi), go)


def test_batch_size_and_hook(fx):
    _, _, packed, _, _, test = fx
    images = test[:7]
    ref = graph.run(packed, images, batch_size=256)
    np.testing.assert_array_equal(graph.run(packed, images, batch_size=3), ref)
    calls = []

    def independent_linear(layer, x):
        """int64 numpy of docs/protocol.md's RUN: acc = bias + sum t*x; requantize (ops)."""
        calls.append(layer.name)
        acc = x.astype(np.int64) @ layer.trits.astype(np.int64).T + layer.bias.astype(np.int64)
        return ops.requantize(acc, layer.m0, layer.shift, layer.out_zp)

    np.testing.assert_array_equal(graph.run(packed, images, linear=independent_linear), ref)
    assert calls == [l.name for l in packed.linear_layers()]  # linear_layers() is execution order


def test_bad_hook_and_bad_images(fx):
    _, _, packed, _, _, test = fx
    with pytest.raises(ValueError, match="linear hook returned"):
        graph.run(packed, test[:2], linear=lambda layer, x: np.zeros((1, 1), np.int8))
    with pytest.raises(ValueError, match="uint8 images"):
        graph.run(packed, test[:2].astype(np.float32))
    with pytest.raises(ValueError, match="uint8 images"):
        graph.run(packed, test[:2, :, :-1])


# -- Swin indexing against the torch model's own implementation -----------------------------

@pytest.mark.parametrize("wh, ww", [(2, 2), (4, 4), (7, 7), (3, 5)])
def test_relative_position_index_matches_torch(wh, ww):
    from sw.models.swin import relative_position_index
    np.testing.assert_array_equal(graph.relative_position_index(wh, ww),
                                  relative_position_index(wh, ww).numpy())


@pytest.mark.parametrize("res, win, shift", [((8, 8), (4, 4), (2, 2)), ((14, 14), (7, 7), (3, 3)),
                                             ((56, 56), (7, 7), (3, 3))])
def test_shift_regions_match_torch_mask(res, win, shift):
    from sw.models.swin import shifted_window_mask
    regions = graph.shift_regions(*res, *win, *shift)
    cross = regions[:, :, None] != regions[:, None, :]
    np.testing.assert_array_equal(cross, shifted_window_mask(res, win, shift).numpy() != 0)


def test_window_partition_round_trip():
    x = np.random.default_rng(0).integers(-128, 128, (2, 8, 12, 3), dtype=np.int8)
    w = graph.window_partition(x, 4, 3)
    assert w.shape == (2 * 2 * 4, 12, 3)
    np.testing.assert_array_equal(w[1].reshape(4, 3, 3), x[0, 0:4, 3:6])  # window (0, 1)
    np.testing.assert_array_equal(graph.window_reverse(w, 4, 3, 8, 12), x)


def test_patch_merge_matches_torch():
    from sw.models.swin import PatchMerging
    x = torch.randn(2, 4, 6, 5)
    pm = PatchMerging(5)
    with torch.no_grad():
        pm.norm = torch.nn.Identity()
        pm.reduction = torch.nn.Identity()
        want = pm(x).numpy()
    np.testing.assert_array_equal(graph.patch_merge(x.numpy()), want)


def test_swin_bias_constant_is_compact_and_exact():
    model, packed, *_ = packed_fixture("swin_tiny32")
    blocks = [b for s in packed.config["graph"]["stages"] for b in s["blocks"]]
    assert any(any(b["shift"]) for b in blocks)
    for stage, torch_stage in zip(packed.config["graph"]["stages"], model.layers):
        for b, blk in zip(stage["blocks"], torch_stage.blocks):
            name = b["name"]
            assert f"const/{name}.attn.bias" not in packed.tensors  # stored as tables
            s, zp = packed.config["quant_points"][f"{name}.attn.qp_bias"]
            with torch.no_grad():
                want = quantize_tensor(blk.attn_bias(), torch.tensor(s, dtype=torch.float32),
                                       torch.tensor(zp, dtype=torch.int32)).numpy()
            got = graph.window_bias(packed, b, tuple(stage["resolution"]))
            np.testing.assert_array_equal(got, want)


def test_inconsistent_model_is_refused_before_running():
    _, packed, *_ , test = packed_fixture("vit_fmnist")
    broken = tvt.Model(dict(packed.config), {k: v for k, v in packed.tensors.items()
                                             if not k.startswith("op/blocks.1.norm2/")})
    with pytest.raises(ValueError, match="blocks.1.norm2"):
        graph.run(broken, test[:1])
    cfg = dict(packed.config, graph=dict(packed.config["graph"], kind="resnet"))
    with pytest.raises(ValueError, match="resnet"):
        graph.run(tvt.Model(cfg, packed.tensors), test[:1])
