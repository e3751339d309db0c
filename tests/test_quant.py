"""sw.quant: TWN ternarization, 8-bit weights, int8 activation fake quant, prepare()."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from sw import quant
from sw.models.quant_point import QuantPoint
from sw.quant import ActQuantizer, QuantConv2d, QuantLinear, SoftmaxQuantizer


def twn_numpy(w: np.ndarray, granularity: str):
    """Independent TWN: loops over rows in float64."""
    w = w.astype(np.float64)
    trits = np.zeros(w.shape, np.int8)
    alpha = np.zeros(w.shape[0])
    if granularity == "layer":
        delta = 0.7 * np.abs(w).mean()
        big = np.abs(w) > delta
        a = np.abs(w)[big].mean() if big.any() else 0.0
        return np.where(big, np.sign(w), 0).astype(np.int8), np.full(w.shape[0], a)
    for o in range(w.shape[0]):
        delta = 0.7 * np.abs(w[o]).mean()
        big = np.abs(w[o]) > delta
        trits[o] = np.where(big, np.sign(w[o]), 0)
        alpha[o] = np.abs(w[o])[big].mean() if big.any() else 0.0
    return trits, alpha


weights = st.tuples(st.integers(1, 24), st.integers(1, 40), st.floats(1e-3, 1e2), st.integers(0, 2**31))


@settings(max_examples=60, deadline=None)
@given(weights, st.sampled_from(["channel", "layer"]))
def test_ternarize_matches_independent_twn(spec, granularity):
    o, k, scale, seed = spec
    w = (np.random.default_rng(seed).standard_normal((o, k)) * scale).astype(np.float32)
    trits, alpha = quant.ternarize(torch.from_numpy(w), granularity)
    assert trits.dtype == torch.int8 and alpha.shape == (o,)
    assert set(np.unique(trits.numpy())) <= {-1, 0, 1}
    ref_t, ref_a = twn_numpy(w, granularity)
    # a weight within float rounding of delta may fall either way; elsewhere trits are equal
    delta = 0.7 * np.abs(w).mean(axis=1, keepdims=True) if granularity == "channel" else 0.7 * np.abs(w).mean()
    near = np.isclose(np.abs(w), delta, rtol=1e-5)
    assert np.array_equal(trits.numpy()[~near], ref_t[~near])
    if not near.any():
        np.testing.assert_allclose(alpha.numpy(), ref_a, rtol=1e-5)


def test_ternary_channel_with_all_zero_weights():
    w = torch.zeros(3, 5)
    w[1] = torch.tensor([1.0, -2.0, 0.1, 0.0, 3.0])
    trits, alpha = quant.ternarize(w)
    assert trits[0].abs().sum() == 0 and alpha[0] == 0
    # delta = 0.7 * 1.22 = 0.854: 1, -2, 3 survive, alpha = 2
    assert trits[1].tolist() == [1, -1, 0, 0, 1] and alpha[1] == pytest.approx(2.0)


def test_int8_weights_match_numpy():
    w = torch.randn(7, 33) * torch.linspace(0.01, 3, 7)[:, None]
    q, s = quant.quantize_int8_per_channel(w)
    wn = w.numpy()
    s_ref = np.abs(wn).max(axis=1) / 127
    np.testing.assert_allclose(s.numpy(), s_ref, rtol=1e-6)
    q_ref = np.clip(np.rint(wn / s.numpy()[:, None]), -127, 127)
    assert np.array_equal(q.numpy(), q_ref.astype(np.int8))
    assert q.abs().amax(dim=1).eq(127).all()


@pytest.mark.parametrize("fake", [quant.fake_ternary, quant.fake_int8])
def test_weight_ste_passes_gradient_unchanged(fake):
    w = torch.randn(6, 10, requires_grad=True)
    g = torch.randn(6, 10)
    (fake(w) * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_fake_ternary_forward_is_alpha_times_trits():
    w = torch.randn(4, 3, 2, 2)
    trits, alpha = quant.ternarize(w.reshape(4, -1))
    expect = (trits.float() * alpha[:, None]).reshape(w.shape)
    assert torch.equal(quant.fake_ternary(w), expect)


def _observed(x):
    q = ActQuantizer().train()
    q(x)
    return q.eval()


@settings(max_examples=60, deadline=None)
@given(st.floats(-50, 0), st.floats(0, 50), st.integers(0, 2**31))
def test_act_fake_quant_equals_dequant_quant_and_numpy(lo, hi, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(lo - 1, hi + 1, size=200).astype(np.float32))
    q = _observed(torch.tensor([lo, hi], dtype=torch.float32))
    codes = q.quantize(x)
    assert codes.dtype == torch.int8
    assert torch.equal(q(x), q.dequantize(codes))
    s, zp = q.scale.numpy(), int(q.zero_point)
    ref = np.clip(np.rint(x.numpy() / s) + zp, -128, 127).astype(np.int8)  # rint: half to even
    assert np.array_equal(codes.numpy(), ref)
    assert q.quantize(torch.zeros(1)).item() == zp  # zero is exact
    # the observed range is covered to within half a step
    inside = (x >= lo) & (x <= hi)
    if inside.any():
        assert (q(x)[inside] - x[inside]).abs().max() <= s / 2 * 1.0001 + 1e-7


def test_act_quant_rounds_half_to_even():
    q = ActQuantizer()
    q.scale.fill_(0.5)
    q.zero_point.fill_(0)
    assert q.quantize(torch.tensor([0.25, 0.75, -0.25, 1.25])).tolist() == [0, 2, 0, 2]


def test_act_ste_gradient_is_one_inside_zero_outside():
    q = _observed(torch.tensor([-1.0, 3.0]))
    x = torch.linspace(-3, 6, 101, requires_grad=True)
    q(x).sum().backward()
    codes = torch.round(x.detach() / q.scale) + q.zero_point
    expect = ((codes >= -128) & (codes <= 127)).float()
    assert torch.equal(x.grad, expect)
    assert x.grad[0] == 0 and x.grad[-1] == 0 and x.grad[50] == 1


def test_observer_ema_and_eval_freezes():
    q = ActQuantizer(momentum=0.5).train()
    q(torch.tensor([-1.0, 1.0]))
    q(torch.tensor([-3.0, 5.0]))
    assert q.running_min.item() == -2.0 and q.running_max.item() == 3.0
    assert q.scale.item() == pytest.approx(5.0 / 255)
    before = (q.scale.clone(), q.zero_point.clone())
    q.eval()(torch.tensor([-100.0, 100.0]))
    assert torch.equal(q.scale, before[0]) and torch.equal(q.zero_point, before[1])


def test_softmax_quantizer_fixed():
    q = SoftmaxQuantizer()
    assert q.scale.item() == 1 / 256 and q.zero_point.item() == -128
    assert q.quantize(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-128, 0, 127]


class Tiny(nn.Module):
    """A patch-embedding conv, two QuantPoints, a block linear and a head (timm names)."""

    def __init__(self):
        super().__init__()
        self.qp_input = QuantPoint()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(2, 8, 4, 4)
        self.blocks = nn.Sequential(nn.Linear(8, 8))
        self.qp_soft = QuantPoint("softmax")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.patch_embed.proj(self.qp_input(x)).flatten(2).transpose(1, 2)
        x = self.blocks(x)
        return self.head(self.qp_soft(x.softmax(-1))).mean(1)


def test_prepare_swaps_layers_keeps_state_dict_and_attaches_quantizers():
    m = Tiny()
    keys = set(m.state_dict())
    w = m.blocks[0].weight
    quant.prepare(m)
    assert isinstance(m.patch_embed.proj, QuantConv2d) and isinstance(m.head, QuantLinear)
    assert m.blocks[0].weight is w  # parameters are shared, not copied
    assert all(l.mode == "ternary" for _, l in quant.quant_layers(m))
    assert isinstance(m.qp_input.quantizer, ActQuantizer)
    assert isinstance(m.qp_soft.quantizer, SoftmaxQuantizer)
    new = set(m.state_dict())
    assert keys <= new and all(".quantizer." in k for k in new - keys)
    m(torch.randn(2, 2, 8, 8)).sum().backward()
    # re-preparing keeps the calibrated quantizers and changes modes
    qi = m.qp_input.quantizer
    quant.prepare(m, weights="int8", scope="blocks")
    assert m.qp_input.quantizer is qi
    assert m.patch_embed.proj.mode == "fp" and m.head.mode == "fp" and m.blocks[0].mode == "int8"
    quant.prepare(m, weights="fp", acts=False)
    assert m.qp_input.quantizer is None


def test_prepare_rejects_bad_options():
    for kwargs in ({"weights": "binary"}, {"granularity": "tensor"}, {"scope": "head"}):
        with pytest.raises(ValueError):
            quant.prepare(Tiny(), **kwargs)


def test_quant_conv_is_a_ternary_linear_over_patches():
    conv = QuantConv2d.from_conv(nn.Conv2d(3, 16, 7, 7))
    x = torch.randn(2, 3, 28, 28)
    trits, alpha = conv.ternary_weights()
    assert trits.shape == (16, 3 * 7 * 7)
    patches = F.unfold(x, 7, stride=7)                      # [B, C*kh*kw, L], (C, kh, kw) order
    ref = torch.einsum("bkl,ok->bol", patches, trits.float() * alpha[:, None]) + conv.bias[None, :, None]
    out = conv(x).flatten(2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_quant_linear_layerwise_has_one_alpha():
    lin = QuantLinear.from_linear(nn.Linear(12, 5), granularity="layer")
    _, alpha = lin.ternary_weights()
    assert torch.all(alpha == alpha[0])
    trits, alpha = lin.ternary_weights()
    x = torch.randn(4, 12)
    torch.testing.assert_close(lin(x), x @ (trits.float() * alpha[:, None]).T + lin.bias)


def test_floor_keeps_the_swin_mask_from_taking_the_int8_range():
    """Values below `floor` (Swin's -100 shift mask) are not observed and saturate to -128."""
    import torch
    from sw.quant.acts import ActQuantizer
    x = torch.tensor([-100.0, -100.0, -0.5, 0.25, 0.5])
    q = ActQuantizer(floor=-16.0).train()
    q(x)
    assert float(q.scale) == pytest.approx(16.5 / 255)
    codes = q.quantize(x)
    assert codes[0] == -128 and codes[1] == -128
    assert abs(float(q.dequantize(codes)[2]) + 0.5) <= float(q.scale) / 2
    plain = ActQuantizer().train()
    plain(x)
    assert float(plain.scale) > 6 * float(q.scale)  # without the floor the bias would be coarse
