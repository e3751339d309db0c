"""sw.ref.ops against independent oracles: Python integers / fractions, float64 math."""
import math
from fractions import Fraction

import numpy as np
import pytest

from sw.ref import ops


def _round_half_away(fr: Fraction) -> int:
    q = (2 * abs(fr.numerator) + fr.denominator) // (2 * fr.denominator)
    return q if fr >= 0 else -q


# ---------------------------------------------------------------- quantize_multiplier
@pytest.mark.parametrize("real", [1e-9, 3.1e-5, 0.00417, 0.25, 0.5, 0.7071, 0.999999999,
                                  1.0, 1.5, 3.0, 117.3, 2**20 + 0.3])
def test_quantize_multiplier_represents_real(real):
    m0, shift = ops.quantize_multiplier(real)
    assert 2**30 <= m0 < 2**31
    got = Fraction(m0) * Fraction(2) ** (shift - 31)
    assert abs(got - Fraction(real)) <= Fraction(2) ** (shift - 32)  # half a unit of m0


@pytest.mark.parametrize("bits", [8, 16, 24, 31])
@pytest.mark.parametrize("real", [3.1e-5, 0.00417, 0.7071, 0.999999999, 1 - 2.0**-20, 117.3])
def test_quantize_multiplier_with_fewer_bits(real, bits):
    """m0 keeps `bits` significant bits: the nearest such multiplier to `real` (exact oracle)."""
    m0, shift = ops.quantize_multiplier(real, bits)
    assert 2**30 <= m0 < 2**31 and m0 % 2 ** (31 - bits) == 0
    unit = Fraction(2) ** (shift - bits)  # one step of a `bits`-bit mantissa at this exponent
    got = Fraction(m0) * Fraction(2) ** (shift - 31)
    assert abs(got - Fraction(real)) <= unit / 2
    if bits == 31:
        assert (m0, shift) == ops.quantize_multiplier(real)


def test_quantize_multiplier_edges():
    assert ops.quantize_multiplier(0.0) == (0, 0)
    assert ops.quantize_multiplier(2.0**-40) == (0, 0)          # below 2^-32: flushed
    assert ops.quantize_multiplier(1 - 2.0**-40) == (2**30, 1)  # mantissa rounds up to 1.0
    assert ops.quantize_multiplier(0.5) == (2**30, 0)
    with pytest.raises(ValueError):
        ops.quantize_multiplier(-0.1)
    assert ops.quantize_multiplier(1 - 2.0**-20, 16) == (2**30, 1)  # rounds up at 16 bits
    assert ops.quantize_multiplier(0.75 + 2.0**-18, 16) == (3 << 29, 0)
    with pytest.raises(ValueError):
        ops.quantize_multiplier(0.5, 0)


# ---------------------------------------------------------------- requantize (single rounding)
def _requant_oracle(acc, m0, shift, zp):
    v = _round_half_away(Fraction(int(acc) * int(m0), 2 ** (31 - int(shift)))) + zp
    return max(-128, min(127, v))


def test_requantize_matches_fraction_oracle():
    rng = np.random.default_rng(0)
    n = 4000
    acc = np.concatenate([rng.integers(-(2**31), 2**31, n // 2),
                          rng.integers(-5000, 5000, n // 2),
                          [ops.INT32_MIN, ops.INT32_MAX, 0, 1, -1]]).astype(np.int64)
    m0 = rng.integers(2**30, 2**31, acc.size)
    shift = rng.integers(-31, 8, acc.size)
    shift[acc.size // 2:] = rng.integers(-15, 2, acc.size - acc.size // 2)
    got = ops.requantize(acc, m0, shift, 3)
    want = [_requant_oracle(a, m, s, 3) for a, m, s in zip(acc, m0, shift)]
    np.testing.assert_array_equal(got, want)
    assert 10 < np.count_nonzero((got > -128) & (got < 127))


def test_requantize_ties_away_from_zero():
    # m0 * 2^(shift-31) = 1/2^j exactly: odd multiples of 2^(j-1) are exact ties
    for j in range(1, 6):
        acc = np.arange(-200, 201) * 2 ** (j - 1)
        got = ops.requantize(acc, 2**30, 1 - j, 0)
        want = [_requant_oracle(a, 2**30, 1 - j, 0) for a in acc]
        np.testing.assert_array_equal(got, want)
        assert got[acc == 2 ** (j - 1)][0] == 1 and got[acc == -(2 ** (j - 1))][0] == -1


def test_requantize_per_channel_broadcast():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(2**20), 2**20, (3, 7, 5))
    m0 = rng.integers(2**30, 2**31, 5)
    shift = rng.integers(-20, -8, 5)
    got = ops.requantize(acc, m0, shift, -7)
    for c in range(5):
        np.testing.assert_array_equal(got[..., c], ops.requantize(acc[..., c], m0[c], shift[c], -7))


# ---------------------------------------------------------------- double rounding (gemmlowp)
def _srdhm_py(a, b):
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    return int(Fraction(ab + nudge, 2**31))  # int(): toward zero, as C


def _rdbpot_py(x, e):
    mask = (1 << e) - 1
    rem, thr = x & mask, (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def test_double_rounding_matches_python_gemmlowp():
    rng = np.random.default_rng(2)
    acc = rng.integers(-(2**24), 2**24, 3000)
    m0 = rng.integers(2**30, 2**31, 3000)
    shift = rng.integers(-20, 1, 3000)
    got = ops.multiply_by_quantized_multiplier_double(acc, m0, shift)
    want = [_rdbpot_py(_srdhm_py(int(a), int(m)), -int(s)) for a, m, s in zip(acc, m0, shift)]
    np.testing.assert_array_equal(got, want)
    # the two roundings differ from the single one somewhere (why both exist)
    assert np.any(got != ops.multiply_by_quantized_multiplier(acc, m0, shift))


# ---------------------------------------------------------------- ternary_linear / matmul
@pytest.mark.parametrize("k", [1, 64, 3072, 70000])
def test_ternary_linear_exact(k):
    rng = np.random.default_rng(k)
    x = rng.integers(-128, 128, (5, k)).astype(np.int8)
    x[0] = -128
    trits = rng.integers(-1, 2, (9, k)).astype(np.int8)
    trits[0] = 0
    trits[1] = 1
    bias = rng.integers(-(2**20), 2**20, 9).astype(np.int32)
    acc = ops.ternary_accumulate(x, trits, bias)
    np.testing.assert_array_equal(acc, x.astype(np.int64) @ trits.T.astype(np.int64) + bias)
    assert acc[0, 1] == -128 * k + bias[1]
    m0, shift = np.full(9, 2**30), np.full(9, -10)
    np.testing.assert_array_equal(ops.ternary_linear(x, trits, bias, m0, shift, 0),
                                  ops.requantize(acc, m0, shift, 0))


def test_fold_input_zero_point():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (6, 40))
    trits = rng.integers(-1, 2, (8, 40)).astype(np.int8)
    bias_q = rng.integers(-1000, 1000, 8)
    zp = -37
    folded = ops.fold_input_zero_point(bias_q, trits, zp)
    assert folded.dtype == np.int32
    np.testing.assert_array_equal(x @ trits.T + folded, (x - zp) @ trits.T + bias_q)


@pytest.mark.parametrize("k,zps", [(16, (0, 0)), (64, (-128, 127)), (600, (-90, 40))])
def test_matmul_exact(k, zps):
    rng = np.random.default_rng(k)
    a = rng.integers(-128, 128, (2, 3, 7, k)).astype(np.int8)
    b = rng.integers(-128, 128, (2, 3, k, 5)).astype(np.int8)
    acc = (a.astype(np.int64) - zps[0]) @ (b.astype(np.int64) - zps[1])
    m0, shift = ops.quantize_multiplier(1 / (k * 300.0))
    want = np.clip(ops.multiply_by_quantized_multiplier_double(acc, m0, shift) + 4, -128, 127)
    np.testing.assert_array_equal(ops.matmul(a, b, zps[0], zps[1], m0, shift, 4), want)


# ---------------------------------------------------------------- softmax / gelu vs float
@pytest.mark.parametrize("s_in", [0.02, 0.1, 0.5])
def test_softmax_close_to_float(s_in):
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (200, 50)).astype(np.int8)
    x[0] = 5
    got = ops.softmax(x, ops.SoftmaxParams.from_scales(s_in)).astype(np.int64)
    z = s_in * x.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    ideal = 256 * e / e.sum(-1, keepdims=True) - 128
    assert np.abs(got - np.clip(ideal, -128, 127)).max() <= 1.0
    assert np.all(got[0] == round(256 / 50) - 128)


def test_gelu_table_close_to_float():
    for approximate in (False, True):
        t = ops.gelu_table(0.05, -3, 0.02, -100, approximate).astype(np.int64)
        xr = 0.05 * (np.arange(-128, 128) + 3)
        ideal = 0.5 * xr * (1 + np.vectorize(math.erf)(xr / math.sqrt(2))) / 0.02 - 100
        assert np.abs(t - np.clip(ideal, -128, 127)).max() <= 0.5 + 1e-3 + 0.02 * approximate
    x = np.array([[-128, 0], [5, 127]], np.int8)
    np.testing.assert_array_equal(ops.gelu(x, t), t[x.astype(int) + 128])


# ---------------------------------------------------------------- layernorm
def _float_layernorm(x, zp, s_in, gamma, beta, eps):
    xr = s_in * (x.astype(np.float64) - zp)
    mu, var = xr.mean(-1, keepdims=True), xr.var(-1, keepdims=True)
    return (xr - mu) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("c,seed", [(16, 0), (64, 1), (192, 2), (768, 3)])
def test_layernorm_error_bound(c, seed):
    """Bound (docs/numerics.md): |y - (ideal / s_out + zp)| <= 1/2 + max_c |M_c| + 2^-20
    wherever the ideal is inside [-128, 127]; hence |y - round(ideal)| <= 1 LSB."""
    rng = np.random.default_rng(seed)
    rows = 3000
    spread = rng.uniform(2, 60, (rows, 1))
    x = np.round(rng.normal(0, 1, (rows, c)) * spread + rng.normal(0, 20, (rows, 1)))
    x[:, : c // 8] += rng.normal(0, 40, (rows, 1))       # outlier channels, as in ViTs
    x = np.clip(x, -128, 127).astype(np.int8)
    zp, s_in, eps = 5, 0.05, 1e-6
    gamma = rng.normal(1.0, 0.5, c)
    gamma[0] = 0.0
    gamma[1] = -0.7
    beta = rng.normal(0, 0.4, c)
    ideal_real = _float_layernorm(x, zp, s_in, gamma, beta, eps)
    s_out, zp_out = np.abs(ideal_real).max() / 120, -3
    p = ops.LayerNormParams.from_float(gamma, beta, eps, s_in, s_out, zp_out)
    y = ops.layernorm(x, p).astype(np.float64)
    ideal = ideal_real / np.float32(s_out) + zp_out
    inside = (ideal > -128) & (ideal < 127)
    gain = np.abs(gamma).max() * math.sqrt(c) * 2.0**-16 / s_out
    err = np.abs(y - ideal)[inside]
    assert err.max() <= 0.5 + gain + 2**-20, (err.max(), gain)
    assert np.abs(y - np.clip(np.round(ideal), -128, 127)).max() <= 1
    assert np.all(y[~inside] == np.clip(np.round(ideal[~inside]), -128, 127))


def test_layernorm_degenerate_rows():
    c = 32
    gamma, beta = np.linspace(-1, 1, c), np.linspace(-0.5, 0.5, c)
    p = ops.LayerNormParams.from_float(gamma, beta, 1e-5, 0.1, 0.01, 0)
    x = np.stack([np.full(c, -128), np.full(c, 127), np.r_[np.full(c - 1, -128), 127]])
    y = ops.layernorm(x.astype(np.int8), p).astype(np.int64)
    ideal = _float_layernorm(x, 0, 0.1, gamma, beta, 1e-5) / np.float32(0.01)
    assert np.abs(y - np.clip(np.round(ideal), -128, 127)).max() <= 1
    np.testing.assert_array_equal(y[0], np.clip(np.round(beta / 0.01), -128, 127))


def test_layernorm_params_roundtrip_and_errors():
    p = ops.LayerNormParams.from_float(np.ones(8), np.zeros(8), 1e-6, 0.1, 0.02, 1)
    arrays = p.to_arrays()
    assert all(v.dtype.kind == "i" for v in arrays.values())
    assert ops.LayerNormParams.from_arrays(arrays) == p
    with pytest.raises(ValueError, match="channels"):
        ops.layernorm(np.zeros((2, 9), np.int8), p)
    del arrays["offset"]
    with pytest.raises(ValueError, match="offset"):
        ops.LayerNormParams.from_arrays(arrays)
    with pytest.raises(ValueError, match="integers"):
        ops.LayerNormParams.from_arrays({**p.to_arrays(), "eps_q": np.float32(1.0)})


# ---------------------------------------------------------------- mean
def test_mean_matches_fraction_oracle():
    rng = np.random.default_rng(6)
    x = rng.integers(-128, 128, (4, 49, 6)).astype(np.int8)
    x[0, :, 0] = np.r_[np.full(24, -128), np.full(25, -127)]
    p = ops.MeanParams.from_scales(0.05, -4, 0.03, 2)
    got = ops.mean(x, 1, p)
    assert got.shape == (4, 6)
    k = min(49 .bit_length() - 1, 32, 31 + p.shift)
    m0, shift = (p.m0 << k) // 49, p.shift - k
    assert ops.mean_multiplier(p.m0, p.shift, 49) == (m0, shift)
    for b in range(4):
        for c in range(6):
            total = int((x[b, :, c].astype(int) + 4).sum())
            hi = _srdhm_py(total, m0)                       # gemmlowp double rounding
            want = max(-128, min(127, _rdbpot_py(hi, -shift) + 2))
            assert got[b, c] == want
            exact = Fraction(total, 49) * Fraction(p.m0, 2 ** (31 - p.shift)) + 2
            assert abs(int(got[b, c]) - float(exact)) <= 1.5 or got[b, c] in (-128, 127)


# ---------------------------------------------------------------- integer helpers
def test_isqrt_and_bit_length():
    rng = np.random.default_rng(7)
    n = np.concatenate([rng.integers(0, 2**62, 2000), 2 ** np.arange(62), 2 ** np.arange(1, 62) - 1,
                        [k * k for k in (0, 1, 2**31 - 1, 1234567891)],
                        [k * k - 1 for k in (1, 2**31 - 1, 1234567891)]]).astype(np.int64)
    np.testing.assert_array_equal(ops.isqrt(n), [math.isqrt(int(v)) for v in n])
    np.testing.assert_array_equal(ops._bit_length(n), [int(v).bit_length() for v in n])


def test_params_roundtrip():
    rng = np.random.default_rng(8)
    trits = rng.integers(-1, 2, (4, 10)).astype(np.int8)
    for p in (ops.AddParams.from_scales(0.1, 3, 0.05, -2, 0.12, 0),
              ops.MatmulParams.from_scales(0.1, 3, 0.05, -2, 0.12, 0),
              ops.SoftmaxParams.from_scales(0.07),
              ops.MeanParams.from_scales(0.1, 0, 0.1, 0),
              ops.LinearParams.from_scales(0.1, 4, [0.1, 0.2, 0.3, 0.4], 0.5, 0, trits)):
        q = type(p).from_arrays(p.to_arrays())
        assert q == p
