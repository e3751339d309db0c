"""sw.models: timm compatibility (fixtures made by timm 1.0.31), quantization points, registry."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sw.models import (QuantPoint, SwinTransformer, UnknownModelError, VisionTransformer,
                       create_model, list_models, load_checkpoint, model_config)
from sw.models.swin import (MASK_VALUE, shifted_window_mask, window_order, window_partition,
                            window_reverse)

FIXTURES = Path("/work/shared/fixtures/timm")
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "timm"
NUMERICS = Path(__file__).resolve().parents[1] / "docs" / "numerics.md"
CLASSES = {"VisionTransformer": VisionTransformer, "SwinTransformer": SwinTransformer}
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="timm fixtures not found")


def fixture_model(name):
    """The fixture's model built from its recorded timm kwargs, its state dict and its io."""
    spec = json.loads((FIXTURES / f"{name}.json").read_text())
    model = CLASSES[spec["timm_class"]](**spec["kwargs"]).eval()
    state = torch.load(FIXTURES / f"{name}.pth", weights_only=True)
    io = np.load(FIXTURES / f"{name}_io.npz")
    return model, state, io


# ---- timm compatibility -------------------------------------------------------------------

@needs_fixtures
@pytest.mark.parametrize("name", ["vit_fmnist", "swin_tiny32"])
def test_fixture_loads_strict_and_matches_timm_logits(name):
    model, state, io = fixture_model(name)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits = model(torch.from_numpy(io["input"])).numpy()
    assert logits.shape == io["logits"].shape
    assert np.abs(logits - io["logits"]).max() <= 1e-4


@needs_fixtures
def test_swin_non_persistent_buffers_as_timm():
    model, state, _ = fixture_model("swin_tiny32")
    assert set(model.state_dict()) == set(state)
    buffers = {n for n, _ in model.named_buffers()}
    assert any(n.endswith("relative_position_index") for n in buffers)
    assert any(n.endswith("attn_mask") for n in buffers)


# timm's published parameter counts (timm model cards / benchmark tables).
@pytest.mark.parametrize("name,count", [
    ("deit_tiny_patch16_224", 5_717_416),
    ("deit_small_patch16_224", 22_050_664),
    ("deit_base_patch16_224", 86_567_656),
    ("swin_tiny_patch4_window7_224", 28_288_354),
    ("swin_small_patch4_window7_224", 49_606_258),
    ("swin_base_patch4_window7_224", 87_768_224),
])
def test_parameter_count_of_timm_names(name, count):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


@needs_fixtures
def test_load_checkpoint_converts_original_swin_and_deit_wrappers():
    model, state, io = fixture_model("swin_tiny32")
    # The original Microsoft layout: merging at the END of the previous stage, `head.*`,
    # and the derived buffers saved too.
    old = {}
    for k, v in state.items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}" if m else k
        old[k.replace("head.fc.", "head.")] = v
    old["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    load_checkpoint(model, {"model": old})
    with torch.no_grad():
        logits = model(torch.from_numpy(io["input"])).numpy()
    assert np.abs(logits - io["logits"]).max() <= 1e-4

    vit, vit_state, vit_io = fixture_model("vit_fmnist")
    load_checkpoint(vit, {"model": vit_state, "epoch": 3})  # DeiT's wrapper
    with torch.no_grad():
        assert np.abs(vit(torch.from_numpy(vit_io["input"])).numpy() - vit_io["logits"]).max() <= 1e-4


def test_load_checkpoint_errors_are_one_line(tmp_path):
    model = create_model("vit-fmnist")
    state = model.state_dict()
    del state["head.bias"]
    state["pos_embed"] = torch.zeros(1, 5, 64)
    with pytest.raises(ValueError) as e:
        load_checkpoint(model, state)
    msg = str(e.value)
    assert "\n" not in msg and "head.bias" in msg and "pos_embed" in msg
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(model, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_checkpoint(model, tmp_path / "junk.pth")


# ---- quantization points -------------------------------------------------------------------

def numerics_table_names():
    """The QuantPoint attribute names of docs/numerics.md's table (the contract)."""
    text = NUMERICS.read_text()
    table = text.split("## The quantization points", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) > 3:
            names |= set(re.findall(r"`(qp_\w+)`", cells[2]))
    return names


BLOCK_QPS = ["qp_norm1", "attn.qp_qkv", "attn.qp_scores", "attn.qp_softmax", "attn.qp_ctx",
             "attn.qp_proj", "qp_res1", "qp_norm2", "mlp.qp_fc1", "mlp.qp_act", "mlp.qp_fc2",
             "qp_res2"]


def expected_vit_points(depth):
    names = ["qp_input", "qp_tokens", "qp_pos", "qp_embed"]
    names += [f"blocks.{i}.{q}" for i in range(depth) for q in BLOCK_QPS]
    return names + ["qp_norm", "qp_head"]


def expected_swin_points(depths):
    names = ["qp_input", "patch_embed.qp_out", "patch_embed.qp_norm"]
    for s, depth in enumerate(depths):
        if s > 0:
            names += [f"layers.{s}.downsample.qp_norm", f"layers.{s}.downsample.qp_out"]
        for b in range(depth):
            for q in BLOCK_QPS:
                names.append(f"layers.{s}.blocks.{b}.{q}")
                if q == "attn.qp_scores":
                    names += [f"layers.{s}.blocks.{b}.attn.qp_bias", f"layers.{s}.blocks.{b}.attn.qp_biased"]
    return names + ["qp_norm", "qp_pool", "qp_head"]


def test_numerics_table_names_all_present():
    vit = {n.rsplit(".", 1)[-1] for n, _ in create_model("vit-fmnist").quant_points()}
    swin = {n.rsplit(".", 1)[-1] for n, _ in create_model("swin-fmnist").quant_points()}
    table = numerics_table_names()
    assert len(table) >= 20
    assert table == vit | swin
    assert {"qp_tokens", "qp_pos", "qp_embed"} <= vit - swin
    assert {"qp_bias", "qp_biased", "qp_pool", "qp_out"} <= swin - vit


@pytest.mark.parametrize("name", ["vit-fmnist", "swin-fmnist"])
def test_quant_points_exact_names_order_and_kinds(name):
    model = create_model(name).eval()
    cfg = model_config(name).kwargs
    expected = (expected_vit_points(cfg["depth"]) if "depth" in cfg else expected_swin_points(cfg["depths"]))
    points = list(model.quant_points())
    assert [n for n, _ in points] == expected
    assert all(isinstance(qp, QuantPoint) for _, qp in points)
    kinds = {n: qp.kind for n, qp in points}
    assert {n for n, k in kinds.items() if k == "softmax"} == {n for n in expected if n.endswith("qp_softmax")}

    # quant_points() order is the order forward() calls them, each exactly once.
    calls = []
    for n, qp in points:
        qp.register_forward_hook(lambda m, i, o, n=n: calls.append(n))
    with torch.no_grad():
        model(torch.randn(2, *model_config(name).input_size))
    assert calls == expected


@needs_fixtures
@pytest.mark.parametrize("name", ["vit_fmnist", "swin_tiny32"])
def test_every_quant_point_is_on_the_data_path(name):
    """A quantizer on any point changes the logits (none is dangling, none is bypassed)."""
    model, state, io = fixture_model(name)
    model.load_state_dict(state)
    x = torch.from_numpy(io["input"][:1])
    for qp_name, qp in model.quant_points():
        qp.quantizer = lambda t: t + float("nan")
        with torch.no_grad():
            assert torch.isnan(model(x)).all(), qp_name
        qp.quantizer = None
    with torch.no_grad():
        assert np.abs(model(x).numpy() - io["logits"][:1]).max() <= 1e-4


@needs_fixtures
def test_swin_bias_is_one_constant_with_the_shift_mask():
    model, state, _ = fixture_model("swin_tiny32")
    model.load_state_dict(state)
    seen = {}
    for name, qp in model.quant_points():
        if name.endswith("attn.qp_bias"):
            qp.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for s, stage in enumerate(model.layers):
        for b, block in enumerate(stage.blocks):
            bias = seen[f"layers.{s}.blocks.{b}.attn.qp_bias"]
            heads, N = block.attn.num_heads, block.attn.window_area
            res = block.input_resolution
            nw = res[0] * res[1] // N
            table = block.attn.relative_position_bias_table
            if b % 2 == 0:
                assert bias.shape == (1, heads, N, N)
                assert not (bias <= MASK_VALUE / 2).any()
            else:
                assert bias.shape == (nw, heads, N, N)
                assert (bias <= MASK_VALUE / 2).any()
            torch.testing.assert_close(bias, block.attn_bias())
            # unmasked entries are table values: bias[., h, i, j] = table[idx(i, j), h]
            ws = block.window_size
            for i, j in [(0, 0), (0, N - 1), (N - 1, 0), (3, 5)]:
                dh = i // ws[1] - j // ws[1] + ws[0] - 1
                dw = i % ws[1] - j % ws[1] + ws[1] - 1
                torch.testing.assert_close(bias[0, :, i, j], table[dh * (2 * ws[1] - 1) + dw])


@pytest.mark.parametrize("res,ws", [((8, 8), (4, 4)), ((14, 14), (7, 7)), ((12, 8), (4, 4))])
def test_shifted_window_mask_matches_no_wraparound_oracle(res, ws):
    """Two tokens of a shifted window may attend iff they were neighbours before the roll."""
    shift = (ws[0] // 2, ws[1] // 2)
    mask = shifted_window_mask(res, ws, shift)
    H, W = res
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    orig = torch.stack([(rows + shift[0]) % H, (cols + shift[1]) % W], dim=-1).float()  # rolled by -shift
    win = window_partition(orig[None], ws)  # nW, N, 2
    dist = (win[:, :, None, :] - win[:, None, :, :]).abs()
    allowed = (dist[..., 0] < ws[0]) & (dist[..., 1] < ws[1])
    assert torch.equal(mask == 0, allowed)
    assert set(mask.unique().tolist()) <= {0.0, MASK_VALUE}


@pytest.mark.parametrize("shift", [(0, 0), (2, 2), (1, 3)])
def test_window_order_is_roll_then_partition(shift):
    x = torch.randn(2, 8, 12, 5)
    order = window_order((8, 12), (4, 4), shift)
    expected = window_partition(torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2)), (4, 4))
    assert torch.equal(x.reshape(2, 96, 5)[:, order].reshape(-1, 16, 5), expected)
    assert torch.equal(torch.sort(order).values, torch.arange(96))


def test_window_partition_roundtrip():
    x = torch.randn(2, 8, 12, 3)
    w = window_partition(x, (4, 4))
    assert w.shape == (2 * 6, 16, 3)
    assert torch.equal(w[1].view(4, 4, 3), x[0, 0:4, 4:8])
    assert torch.equal(window_reverse(w, (4, 4), 8, 12), x)


# ---- registry --------------------------------------------------------------------------------

def test_registry_names_and_configs():
    names = list_models()
    for n in ["deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
              "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
              "swin_base_patch4_window7_224", "vit-fmnist", "swin-fmnist"]:
        assert n in names
    cfg = model_config("vit-fmnist")
    assert cfg.kwargs == dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=64,
                              depth=4, num_heads=4, mlp_ratio=2.0)
    assert cfg.mean == (0.2860,) and cfg.std == (0.3530,) and cfg.input_size == (1, 28, 28)
    assert model_config("swin_fmnist").name == "swin-fmnist"  # '-' and '_' interchangeable
    deit = model_config("deit_small_patch16_224")
    assert deit.mean == (0.485, 0.456, 0.406) and deit.std == (0.229, 0.224, 0.225)
    deit.kwargs["depth"] = 1  # a copy: the registry is not changed
    assert model_config("deit_small_patch16_224").kwargs["depth"] == 12


def test_unknown_model_name():
    with pytest.raises(UnknownModelError) as e:
        create_model("resnet50")
    assert isinstance(e.value, ValueError)
    assert "resnet50" in str(e.value) and "vit-fmnist" in str(e.value) and "swin_small_patch4_window7_224" in str(e.value)


@pytest.mark.parametrize("name", ["vit-fmnist", "swin-fmnist"])
def test_fmnist_models_forward_backward(name):
    model = create_model(name)
    x = torch.randn(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert create_model(name, num_classes=7)(x).shape == (3, 7)


def test_swin_fmnist_has_patch_merging_and_shifted_windows():
    model = create_model("swin-fmnist")
    assert len(model.layers) >= 2 and model.layers[1].downsample.__class__.__name__ == "PatchMerging"
    shifts = [blk.shift_size for stage in model.layers for blk in stage.blocks]
    assert any(any(s) for s in shifts)


def test_bad_inputs_raise_clear_errors():
    model = create_model("vit-fmnist")
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="init_values"):
        VisionTransformer(init_values=1e-5)
    with pytest.raises(TypeError, match="bogus"):
        SwinTransformer(bogus=1)
    with pytest.raises(ValueError, match="not a multiple"):
        VisionTransformer(img_size=30, patch_size=7)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = create_model("vit-fmnist", drop_path_rate=0.5)
    x = torch.randn(4, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_layers_stay_plain_torch_modules():
    """sw.quant swaps these by type; their parameter names must stay timm's."""
    for name in ["vit-fmnist", "swin-fmnist"]:
        model = create_model(name)
        linears = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
        convs = [n for n, m in model.named_modules() if type(m) is torch.nn.Conv2d]
        assert convs == ["patch_embed.proj"]
        assert "blocks.0.attn.qkv" in linears or "layers.0.blocks.0.attn.qkv" in linears
        norms = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in ("norm", "norm1", "norm2")]
        assert norms and all(type(m) is torch.nn.LayerNorm for m in norms)


def test_cli_lists_models_and_rejects_unknown_names(capsys):
    from sw.models.__main__ import main

    assert main(["vit-fmnist", "swin_small_patch4_window7_224", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["vit-fmnist", "swin_small_patch4_window7_224"]
    assert rows[1]["params"] == 49_606_258 and rows[1]["depths"] == [2, 2, 18, 2]
    assert rows[0]["quant_points"] == 4 + 12 * 4 + 2
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and "vit-fmnist" in err
